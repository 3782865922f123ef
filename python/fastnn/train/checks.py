"""The checks and conversions of a training or curvature call's arguments: the loss by name or
object, the model's C++ handle, X and y against the model (shared by fit, evaluate, train_step,
layer_statistics and fastnn.curvature, so that each rejects bad input with the same message)."""

import math

import numpy as np

from .. import _validate as _v
from .._config import _C
from ..nn import loss as _loss
from ..nn._layer_module import LayerModule
from ..nn.container import Sequential
from ..nn.module import Module


# Loss names (fastnn's and Keras's aliases); Keras's categorical_crossentropy takes one-hot rows,
# sparse_ integer labels: CrossEntropyLoss takes both. Keras's losses take probabilities, fastnn's logits.
LOSS_NAMES = {
    "cross_entropy": _loss.CrossEntropyLoss, "crossentropy": _loss.CrossEntropyLoss,
    "sparse_categorical_crossentropy": _loss.CrossEntropyLoss, "categorical_crossentropy": _loss.CrossEntropyLoss,
    "bce_with_logits": _loss.BCEWithLogitsLoss, "binary_crossentropy": _loss.BCEWithLogitsLoss,
    "nll": _loss.NLLLoss,
    "mse": _loss.MSELoss, "mean_squared_error": _loss.MSELoss,
    "mae": _loss.L1Loss, "mean_absolute_error": _loss.L1Loss, "l1": _loss.L1Loss,
    "smooth_l1": _loss.SmoothL1Loss, "huber": _loss.HuberLoss,
}
CLASS_KERNELS = ("cross_entropy", "nll")


def as_loss(loss, fn="fit"):
    """(loss object, the name of its kernel in the C++ loop)."""
    if isinstance(loss, str):
        if loss.lower() not in LOSS_NAMES:
            raise ValueError(f"{fn}: unknown loss {loss!r}; use one of {sorted(LOSS_NAMES)} or a loss object")
        loss = LOSS_NAMES[loss.lower()]()
    if not isinstance(loss, _loss._Loss) or loss._fit_kernel is None:
        raise TypeError(f"{fn}: loss must be a fastnn.nn loss (CrossEntropyLoss, NLLLoss, BCEWithLogitsLoss, MSELoss, "
                        f"L1Loss, SmoothL1Loss, HuberLoss) or its name, got {type(loss).__name__}")
    if loss.reduction == "none":
        raise ValueError(f"{fn}: the loss's reduction must be 'mean' or 'sum' to train on or evaluate it, got 'none'")
    return loss, loss._fit_kernel


def as_cpp_model(model):
    """The module whose C++ layer runs the loop (a Python-written module is wrapped in a Sequential)."""
    if not isinstance(model, Module):
        raise TypeError(f"fit: model must be a fastnn.nn.Module, got {type(model).__name__}")
    return model if isinstance(model, LayerModule) else Sequential(model)


def check_X(X, model, name="X"):
    X = _v.as_array(X, name)  # lists, torch tensors, DataFrames: one rule (_validate.as_array)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, features...) with N >= 1, got {X.shape}")
    return cast_finite(X, model.dtype, name)  # Keras-style: data is converted to the model's precision


def cast_finite(a, dtype, name):
    """`a` as a C-contiguous `dtype` array, all finite: checked after the cast, where a float64
    1e300 has become inf in a float32 model."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(a, dtype=dtype)
    bad = _C.first_nonfinite(out)
    if bad >= 0:
        index = tuple(int(i) for i in np.unravel_index(bad, out.shape))
        if np.isfinite(a[index]):
            raise ValueError(f"{name}[{', '.join(map(str, index))}] = {a[index].item()!r} is too large for the model's "
                             f"dtype {np.dtype(dtype)} (it would become infinite)")
        raise ValueError(f"{name} contains NaN or infinity (first at index {index})")
    return out


def output_width(model, X, name="X"):
    """Outputs per sample (one eval-mode forward of one sample); also checks the input shape. fit
    needs the forward itself, not only its shape: each BatchNorm records the input shape it saw
    (last_input_shape), which fit's _check_batch_statistics reads."""
    try:
        out = _C.predict(model._layer, X[:1], 1)
    except ValueError as e:  # the layer names its expected shape (or the model its output's); add the data's own
        raise ValueError(f"{name} has shape {X.shape}: {e}") from None
    return int(np.prod(out.shape[1:]))


def inferred_output_width(model, X, name="X"):
    """output_width from the model's shape inference of one sample (no forward: fastnn.hvp pays
    this per call), with the same errors; a model whose shape is not known ahead (a layer written
    in Python) runs output_width's forward."""
    try:
        shape = model._layer.output_shape((1,) + X.shape[1:])
    except ValueError as e:
        raise ValueError(f"{name} has shape {X.shape}: {e}") from None
    if Ellipsis in shape:
        return output_width(model, X, name)
    return math.prod(shape[1:])


def check_y(y, kernel, n, width, model, name="y", ignore_index=-100):
    y = np.asarray(y)
    if y.shape[:1] != (n,):
        raise ValueError(f"{name} must have {n} entries (one per sample), got shape {y.shape}")
    if kernel in CLASS_KERNELS and y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name}: class labels must be integers, got {y.dtype}")
        y = np.ascontiguousarray(y, dtype=np.int64)
        if y.size and 0 <= y.min() and y.max() < width:  # two reductions, the common case
            return y
        bad = ((y < 0) | (y >= width)) & (y != ignore_index)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name}[{i}] = {y[i]} is not a class index in [0, {width}) (the model has {width} outputs)")
        return y
    if kernel == "nll":
        raise ValueError(f"{name}: NLLLoss takes integer class labels (N,), got {y.dtype} of shape {y.shape}")
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got {y.dtype}")
    if int(np.prod(y.shape[1:])) != width:
        raise ValueError(f"{name} must have {width} values per sample like the model output, got shape {y.shape}")
    return cast_finite(y, model.dtype, name)
