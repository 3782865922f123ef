"""Losses and their gradients: softmax cross-entropy, binary cross-entropy with logits, MSE.

Computed in float64 (losses are returned as Python floats, gradients in the input's dtype).
Reductions: "mean" divides the summed loss by N rows (cross-entropy) or by the number of
elements (BCE, MSE); "sum" does not divide.
"""

import numpy as np

__all__ = [
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward",
    "binary_cross_entropy_with_logits_forward_backward",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "cross_entropy_forward_backward",
    "mse_backward",
    "mse_forward",
    "mse_forward_backward",
]


def _scale(reduction, count, op):
    """The factor of the summed loss: 1/count for "mean", 1 for "sum"."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"[{op}] reduction must be 'mean' or 'sum', got {reduction!r}")
    return 1.0 / count if reduction == "mean" else 1.0


def _check_float(x, name, op):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"[{op}] {name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"[{op}] {name} must be float32 or float64, got {x.dtype}")
    if x.size == 0:
        raise ValueError(f"[{op}] {name} is empty (shape {x.shape})")


def _target_matrix(logits, target, op):
    """The target as an (N, C) float64 matrix: one-hot rows for class labels, else the probabilities."""
    _check_float(logits, "logits", op)
    if logits.ndim != 2:
        raise ValueError(f"[{op}] logits must be 2-D (N, C), got shape {logits.shape}")
    n, c = logits.shape
    if not isinstance(target, np.ndarray):
        raise TypeError(f"[{op}] target must be a numpy.ndarray, got {type(target).__name__}")
    if target.ndim == 1:
        if target.dtype not in (np.int64, np.int32):
            raise TypeError(f"[{op}] target of shape {target.shape} holds class labels and must be int64 or int32, "
                            f"got {target.dtype}")
        if target.shape != (n,):
            raise ValueError(f"[{op}] target must have shape ({n},), got {target.shape}")
        bad = np.flatnonzero((target < 0) | (target >= c))
        if bad.size:
            i = bad[0]
            raise ValueError(f"[{op}] target[{i}] = {target[i]} is not a class index in [0, {c})")
        return np.eye(c)[target]
    if target.ndim == 2:
        if target.dtype != logits.dtype:
            raise TypeError(f"[{op}] target of shape {target.shape} holds class probabilities and must be "
                            f"{logits.dtype} like logits, got {target.dtype}")
        if target.shape != logits.shape:
            raise ValueError(f"[{op}] target must have shape {logits.shape}, got {target.shape}")
        if not np.isfinite(target).all():
            raise ValueError(f"[{op}] target (class probabilities) must be finite")
        return target.astype(np.float64)
    raise ValueError(f"[{op}] target must be (N,) class labels or (N, C) class probabilities, got shape {target.shape}")


def _log_softmax(z):
    """log softmax(z) row-wise = z - lse(z), lse(z) = max(z) + log sum exp(z - max(z))."""
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def cross_entropy_forward(logits, target, reduction="mean"):
    """loss = (1/N) sum_i -sum_c t_ic log softmax(z_i)_c."""
    op = "cross_entropy_forward"
    t = _target_matrix(logits, target, op)
    losses = -(t * _log_softmax(logits.astype(np.float64))).sum(axis=1)
    return float(losses.sum() * _scale(reduction, logits.shape[0], op))


def cross_entropy_backward(logits, target, grad=1.0, reduction="mean"):
    """d loss / d z_i = (softmax(z_i) sum_c t_ic - t_i) * grad / N."""
    op = "cross_entropy_backward"
    t = _target_matrix(logits, target, op)
    softmax = np.exp(_log_softmax(logits.astype(np.float64)))
    g = (softmax * t.sum(axis=1, keepdims=True) - t) * grad * _scale(reduction, logits.shape[0], op)
    return g.astype(logits.dtype)


def cross_entropy_forward_backward(logits, target, reduction="mean"):
    """(cross_entropy_forward, cross_entropy_backward with grad = 1)."""
    return (cross_entropy_forward(logits, target, reduction), cross_entropy_backward(logits, target, 1.0, reduction))


def _check_pair(x, target, name, op):
    _check_float(x, name, op)
    if not isinstance(target, np.ndarray):
        raise TypeError(f"[{op}] target must be a numpy.ndarray, got {type(target).__name__}")
    if target.dtype != x.dtype:
        raise TypeError(f"[{op}] target must be {x.dtype} like {name}, got {target.dtype}")
    if target.shape != x.shape:
        raise ValueError(f"[{op}] target must have the shape of {name} {x.shape}, got {target.shape}")
    return x.astype(np.float64), target.astype(np.float64)


def _sigmoid(z):
    """1 / (1 + exp(-z)), written with e = exp(-|z|) <= 1 so that nothing overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy_with_logits_forward(logits, target, reduction="mean"):
    """loss = mean(max(z, 0) - z t + log(1 + exp(-|z|))) = mean(-t log s(z) - (1 - t) log(1 - s(z)))."""
    op = "binary_cross_entropy_with_logits_forward"
    z, t = _check_pair(logits, target, "logits", op)
    losses = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return float(losses.sum() * _scale(reduction, z.size, op))


def binary_cross_entropy_with_logits_backward(logits, target, grad=1.0, reduction="mean"):
    """d loss / d z = (sigmoid(z) - t) * grad / n."""
    op = "binary_cross_entropy_with_logits_backward"
    z, t = _check_pair(logits, target, "logits", op)
    return ((_sigmoid(z) - t) * grad * _scale(reduction, z.size, op)).astype(logits.dtype)


def binary_cross_entropy_with_logits_forward_backward(logits, target, reduction="mean"):
    """(forward, backward with grad = 1)."""
    return (
        binary_cross_entropy_with_logits_forward(logits, target, reduction),
        binary_cross_entropy_with_logits_backward(logits, target, 1.0, reduction),
    )


def mse_forward(input, target, reduction="mean"):
    """loss = sum((x - t)^2) / n."""
    op = "mse_forward"
    x, t = _check_pair(input, target, "input", op)
    return float(((x - t) ** 2).sum() * _scale(reduction, x.size, op))


def mse_backward(input, target, grad=1.0, reduction="mean"):
    """d loss / d x = 2 (x - t) * grad / n."""
    op = "mse_backward"
    x, t = _check_pair(input, target, "input", op)
    return (2.0 * (x - t) * grad * _scale(reduction, x.size, op)).astype(input.dtype)


def mse_forward_backward(input, target, reduction="mean"):
    """(mse_forward, mse_backward with grad = 1)."""
    return mse_forward(input, target, reduction), mse_backward(input, target, 1.0, reduction)
