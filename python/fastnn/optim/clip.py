"""Gradient clipping by global norm and by value, and the max-norm weight constraint.

Each is one fused C++ pass over the flat buffer; frozen parameters (requires_grad=False) are
skipped, as PyTorch skips parameters without a gradient.
"""

from .. import _validate as _v
from .._config import _C
from ..nn.parameter import DECAY, TRAINABLE, Parameter
from .optimizer import segment_table

__all__ = ["clip_grad_norm_", "clip_grad_value_", "max_norm_"]


def _parameters(parameters, what):
    """(buffer, list) from a Parameter or an iterable of Parameters of one FlatBuffer."""
    params = [parameters] if isinstance(parameters, Parameter) else list(parameters)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"{what}: expected fastnn Parameters, got {type(p).__name__}")
    buffers = {id(p.buffer) for p in params}
    if len(buffers) > 1:
        raise ValueError(f"{what}: all parameters must be views into the same FlatBuffer (one model)")
    return (params[0].buffer if params else None), params


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients so that their global norm is at most max_norm (torch.nn.utils.clip_grad_norm_).

    total = ‖(g₁, g₂, …)‖_p over all trainable parameters' gradients (viewed as one vector);
    g ← g · min(1, max_norm / (total + 1e-6)). The norm is summed in double precision over
    fixed chunks in a fixed order, so it does not depend on the thread count.

    Args:
        parameters: a Parameter or an iterable of Parameters of one model.
        max_norm: the largest allowed norm (>= 0).
        norm_type: p of the p-norm, > 0, or ``math.inf`` / ``"inf"`` for the largest |g| (default 2).
        error_if_nonfinite: raise RuntimeError instead of clipping when the total norm is nan or inf.
    Returns:
        The total norm before clipping (float).
    """
    buffer, params = _parameters(parameters, "clip_grad_norm_")
    # the types here (True is not a norm, "2" is not a number); the ranges in C++
    max_norm = _v.check_real(max_norm, "clip_grad_norm_", "max_norm", finite=False)
    norm_type = float(norm_type) if norm_type in ("inf", "Inf") else \
        _v.check_real(norm_type, "clip_grad_norm_", "norm_type", finite=False)
    error_if_nonfinite = _v.check_bool(error_if_nonfinite, "clip_grad_norm_", "error_if_nonfinite")
    if buffer is None:
        return 0.0
    return _C.clip_grad_norm_(buffer.grads, segment_table(params), max_norm, norm_type, error_if_nonfinite)


def clip_grad_value_(parameters, clip_value):
    """Clamp every trainable gradient element to [-clip_value, clip_value] (torch.nn.utils.clip_grad_value_).

    Args:
        parameters: a Parameter or an iterable of Parameters of one model.
        clip_value: the largest allowed |g| (>= 0; a negative value is a ValueError).
    """
    buffer, params = _parameters(parameters, "clip_grad_value_")
    clip_value = _v.check_real(clip_value, "clip_grad_value_", "clip_value", finite=False)
    if buffer is not None:
        _C.clip_grad_value_(buffer.grads, segment_table(params), clip_value)


def max_norm_(parameters, max_norm):
    """Rescale each row of the given matrices to L2 norm <= max_norm (max-norm constraint).

    For every trainable parameter with ndim >= 2, each row w (a unit's incoming weights, shape[1:]
    flattened) with ‖w‖₂ > max_norm becomes w · max_norm / (‖w‖₂ + 1e-7), as
    ``torch.renorm(W, 2, 0, max_norm)`` and Keras ``MaxNorm``. Unlike the optimizers' ``max_norm``
    option this applies to the parameters given, whether or not they were created with weight decay.

    Args:
        parameters: a Parameter or an iterable of Parameters of one model.
        max_norm: the largest allowed row norm (> 0).
    """
    buffer, params = _parameters(parameters, "max_norm_")
    max_norm = _v.check_real(max_norm, "max_norm_", "max_norm", finite=False)
    if buffer is None:
        return
    table = segment_table(params)
    table[:, 2] = (table[:, 2] & TRAINABLE) | DECAY
    _C.max_norm_(buffer.params, table, max_norm)
