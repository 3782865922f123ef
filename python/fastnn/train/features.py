"""cache_features: the outputs of a model's frozen lower layers, computed once for transfer learning.

Training a new top on a frozen bottom recomputes the bottom's forward pass every epoch although
its output never changes; caching it (seed 002's transfer-learning outline: "cache the outputs of
the frozen layers") turns every epoch after the first into training the top alone:

    bottom, top = model[:k], nn.Sequential(nn.Linear(128, 5))
    bottom.requires_grad_(False).eval()
    F = fastnn.train.cache_features(bottom, X)            # (N, 128), once
    fastnn.fit(top, F, y, epochs=20)                      # then nn.Sequential(bottom, top) predicts
"""

from .. import _validate as _v
from ..nn.module import Module
from .fit import predict


def _trainable_in_training_mode(part):
    """Names of the parameters that would still change if `part` were trained: trainable ones of
    modules in training mode (an eval-mode module with trainable parameters is a snapshot the user chose)."""
    names = []
    for mname, m in part.named_modules():
        if not m.training:
            continue
        for pname, p in m._parameters.items():
            if p.requires_grad:
                names.append(f"{mname}.{pname}" if mname else pname)
    return names


def cache_features(frozen_part, X, batch_size=256):
    """The outputs of `frozen_part` for every sample of X, in eval mode, computed once in C++.

        F = frozen_part(X) in eval mode (BatchNorm's running statistics, no dropout),

    the C++ predict path (batches of `batch_size`, the GIL released). Training a new top on F gives
    what training ``nn.Sequential(frozen_part, top)`` gives when frozen_part is frozen and in eval
    mode (fit keeps such a module in eval mode, and the Dropouts in eval mode of a frozen bottom
    such as ``model[:-1]``), without running frozen_part every epoch. Augmentation differs:
    augmented inputs change every epoch, so their features cannot be cached.

    The part must be frozen or in eval mode: every module in training mode must have all its
    parameters frozen (``frozen_part.requires_grad_(False)`` or ``frozen_part.eval()``). Otherwise
    the cached outputs would go stale as soon as those parameters train, and a ValueError names
    them. A frozen part in training mode is still computed in eval mode: its BatchNorms use their
    running statistics and its Dropouts are off, as in predict.

    Args:
        frozen_part: a fastnn.nn.Module (e.g. ``model[:k]`` or ``model.features``).
        X: (N, ...) samples the part takes (converted to its dtype, checked as predict checks them).
        batch_size: samples per C++ forward pass.
    Returns:
        ndarray (N, ...) of the part's outputs, in its dtype.
    """
    fn = "cache_features"
    if not isinstance(frozen_part, Module):
        raise TypeError(f"{fn}: frozen_part must be a fastnn.nn.Module, got {type(frozen_part).__name__}")
    batch_size = _v.check_int(batch_size, fn, "batch_size", 1)
    trainable = _trainable_in_training_mode(frozen_part)
    if trainable:
        shown = ", ".join(trainable[:4]) + (f", ... ({len(trainable)} in all)" if len(trainable) > 4 else "")
        raise ValueError(f"{fn}: frozen_part must be frozen or in eval mode, but it has trainable parameters in "
                         f"training mode ({shown}): their outputs would change as they train. Call "
                         "frozen_part.requires_grad_(False) (and .eval() to keep BatchNorm statistics) first")
    return predict(frozen_part, X, batch_size=batch_size)
