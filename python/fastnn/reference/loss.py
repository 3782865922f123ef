"""Losses and their gradients: softmax cross-entropy, NLL, binary cross-entropy with logits, MSE,
L1, smooth L1, Huber, with PyTorch's options (weight, label_smoothing, ignore_index, pos_weight,
beta, delta).

Computed in float64 (losses are returned as Python floats, gradients in the input's dtype).
Reductions: "mean" divides the summed loss by N rows (cross-entropy, NLL; with class weights or
ignored labels by the summed weight of the labels not ignored, as torch) or by the number of
elements (the elementwise losses); "sum" does not divide; "none" returns the losses per row
(cross-entropy, NLL) or per element as a float64 array, and its backward takes an upstream
gradient of that shape (or a scalar).
"""

import numpy as np

__all__ = [
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward",
    "binary_cross_entropy_with_logits_forward_backward",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "cross_entropy_forward_backward",
    "huber_backward",
    "huber_forward",
    "huber_forward_backward",
    "l1_backward",
    "l1_forward",
    "l1_forward_backward",
    "mse_backward",
    "mse_forward",
    "mse_forward_backward",
    "nll_backward",
    "nll_forward",
    "nll_forward_backward",
    "smooth_l1_backward",
    "smooth_l1_forward",
    "smooth_l1_forward_backward",
]


def _scale(reduction, count, op):
    """The factor of the summed loss: 1/count for "mean", 1 for "sum" (and "none")."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"[{op}] reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    with np.errstate(divide="ignore"):  # every label ignored: 0 / 0 = NaN, as torch
        return np.float64(1.0) / count if reduction == "mean" else 1.0


def _reduce(losses, reduction, divisor, op):
    """The reduced loss (a float), or the losses themselves for "none"."""
    scale = _scale(reduction, divisor, op)
    with np.errstate(invalid="ignore"):
        return losses.astype(np.float64) if reduction == "none" else float(losses.sum() * scale)


def _upstream(grad, reduction, shape, op):
    """The upstream gradient of each loss: a scalar, or for "none" an array of the losses' shape."""
    g = np.asarray(grad, dtype=np.float64)
    if g.ndim and reduction != "none":
        raise TypeError(f"[{op}] grad must be a real number for reduction 'mean' or 'sum'")
    if g.ndim and g.shape != shape:
        raise ValueError(f"[{op}] grad must have the shape of the losses {shape}, got {g.shape}")
    if not np.isfinite(g).all():
        raise ValueError(f"[{op}] grad must be finite")
    return np.broadcast_to(g, shape)


def _check_float(x, name, op):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"[{op}] {name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"[{op}] {name} must be float32 or float64, got {x.dtype}")
    if x.size == 0:
        raise ValueError(f"[{op}] {name} is empty (shape {x.shape})")


def _weights(w, shape, name, op):
    """A weight option as float64 broadcast to `shape`, or None."""
    if w is None:
        return None
    w = np.asarray(w, dtype=np.float64)
    try:
        w = np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(f"[{op}] {name} of shape {w.shape} does not broadcast to {shape}") from None
    if not np.isfinite(w).all():
        raise ValueError(f"[{op}] {name} must be finite")
    return w


def _labels(logits, target, op, ignore_index, name="logits"):
    """Checks logits (N, C) and class labels; returns (labels, mask of the rows not ignored)."""
    _check_float(logits, name, op)
    if logits.ndim != 2:
        raise ValueError(f"[{op}] {name} must be 2-D (N, C), got shape {logits.shape}")
    n, c = logits.shape
    if target.dtype not in (np.int64, np.int32):
        raise TypeError(f"[{op}] target of shape {target.shape} holds class labels and must be int64 or int32, "
                        f"got {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"[{op}] target must have shape ({n},), got {target.shape}")
    kept = target != ignore_index
    bad = np.flatnonzero(kept & ((target < 0) | (target >= c)))
    if bad.size:
        i = bad[0]
        raise ValueError(f"[{op}] target[{i}] = {target[i]} is not a class index in [0, {c})")
    return np.where(kept, target, 0), kept


def _target_matrix(logits, target, op, ignore_index=-100):
    """(N, C) float64 matrix of the target (one-hot rows for class labels, zero for ignored ones),
    and whether the target holds labels."""
    _check_float(logits, "logits", op)
    if logits.ndim != 2:
        raise ValueError(f"[{op}] logits must be 2-D (N, C), got shape {logits.shape}")
    n, c = logits.shape
    if not isinstance(target, np.ndarray):
        raise TypeError(f"[{op}] target must be a numpy.ndarray, got {type(target).__name__}")
    if target.ndim == 1:
        labels, kept = _labels(logits, target, op, ignore_index)
        return np.eye(c)[labels] * kept[:, None], True
    if target.ndim == 2:
        if target.dtype != logits.dtype:
            raise TypeError(f"[{op}] target of shape {target.shape} holds class probabilities and must be "
                            f"{logits.dtype} like logits, got {target.dtype}")
        if target.shape != logits.shape:
            raise ValueError(f"[{op}] target must have shape {logits.shape}, got {target.shape}")
        if not np.isfinite(target).all():
            raise ValueError(f"[{op}] target (class probabilities) must be finite")
        return target.astype(np.float64), False
    raise ValueError(f"[{op}] target must be (N,) class labels or (N, C) class probabilities, got shape {target.shape}")


def _log_softmax(z):
    """log softmax(z) row-wise = z - lse(z), lse(z) = max(z) + log sum exp(z - max(z))."""
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _ce_parts(logits, target, op, weight, label_smoothing, ignore_index):
    """The effective target q (N, C) of each row and the mean's divisor.

    loss_i = -sum_c q_ic log softmax(z_i)_c, d loss_i / d z_i = softmax(z_i) sum_c q_ic - q_i, with
    q_i = w * ((1 - eps) t_i + eps / C) (w the class weights): torch's label smoothing splits eps
    evenly over the classes, and an ignored label has q_i = 0. The divisor of "mean" is the summed
    weight of the labels not ignored (N for probabilities)."""
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"[{op}] label_smoothing must be in [0, 1], got {label_smoothing}")
    t, labels = _target_matrix(logits, target, op, ignore_index)
    n, c = logits.shape
    w = _weights(weight, (c,), "weight", op)
    w = np.ones(c) if w is None else w
    kept = t.sum(axis=1, keepdims=True) > 0 if labels else np.ones((n, 1), bool)
    q = w * ((1 - label_smoothing) * t + label_smoothing / c * kept)
    divisor = float((t * w).sum()) if labels else float(n)
    return q, divisor


def cross_entropy_forward(logits, target, reduction="mean", weight=None, label_smoothing=0.0, ignore_index=-100):
    """loss = (1/D) sum_i -sum_c q_ic log softmax(z_i)_c (see _ce_parts for q and D)."""
    op = "cross_entropy_forward"
    q, divisor = _ce_parts(logits, target, op, weight, label_smoothing, ignore_index)
    losses = -(q * _log_softmax(logits.astype(np.float64))).sum(axis=1)
    return _reduce(losses, reduction, divisor, op)


def cross_entropy_backward(logits, target, grad=1.0, reduction="mean", weight=None, label_smoothing=0.0,
                           ignore_index=-100):
    """d loss / d z_i = (softmax(z_i) sum_c q_ic - q_i) * grad / D."""
    op = "cross_entropy_backward"
    q, divisor = _ce_parts(logits, target, op, weight, label_smoothing, ignore_index)
    g = _upstream(grad, reduction, (logits.shape[0],), op)[:, None] * _scale(reduction, divisor, op)
    softmax = np.exp(_log_softmax(logits.astype(np.float64)))
    return ((softmax * q.sum(axis=1, keepdims=True) - q) * g).astype(logits.dtype)


def cross_entropy_forward_backward(logits, target, reduction="mean", **options):
    """(cross_entropy_forward, cross_entropy_backward with grad = 1)."""
    return (cross_entropy_forward(logits, target, reduction, **options),
            cross_entropy_backward(logits, target, 1.0, reduction, **options))


def _nll_parts(x, target, op, weight, ignore_index):
    """Per-row weights r_i = w[y_i] (0 for ignored rows), the labels and the divisor sum r_i."""
    if not isinstance(target, np.ndarray):
        raise TypeError(f"[{op}] target must be a numpy.ndarray, got {type(target).__name__}")
    labels, kept = _labels(x, target, op, ignore_index, "input")
    w = _weights(weight, (x.shape[1],), "weight", op)
    r = (np.ones(x.shape[1]) if w is None else w)[labels] * kept
    return r, labels, float(r.sum())


def nll_forward(input, target, reduction="mean", weight=None, ignore_index=-100):
    """loss = (1/D) sum_i -w_{y_i} x_{i, y_i} on log-probabilities x, D = sum_i w_{y_i} (rows not ignored)."""
    op = "nll_forward"
    r, labels, divisor = _nll_parts(input, target, op, weight, ignore_index)
    losses = -r * input.astype(np.float64)[np.arange(len(labels)), labels]
    return _reduce(losses, reduction, divisor, op)


def nll_backward(input, target, grad=1.0, reduction="mean", weight=None, ignore_index=-100):
    """d loss / d x_{i, y_i} = -w_{y_i} * grad / D, 0 elsewhere."""
    op = "nll_backward"
    r, labels, divisor = _nll_parts(input, target, op, weight, ignore_index)
    g = _upstream(grad, reduction, (len(labels),), op) * _scale(reduction, divisor, op)
    out = np.zeros(input.shape)
    out[np.arange(len(labels)), labels] = -r * g
    return out.astype(input.dtype)


def nll_forward_backward(input, target, reduction="mean", **options):
    """(nll_forward, nll_backward with grad = 1)."""
    return nll_forward(input, target, reduction, **options), nll_backward(input, target, 1.0, reduction, **options)


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


def _bce_parts(logits, target, op, weight, pos_weight):
    """Elementwise losses and d loss / d z with pos_weight p and weight w (torch's):
    w (-p t log s(z) - (1 - t) log(1 - s(z))), derivative w (s(z) - t - (p - 1) t s(-z));
    p broadcasts along the last dimension."""
    z, t = _check_pair(logits, target, "logits", op)
    w = _weights(weight, z.shape, "weight", op)
    p = _weights(pos_weight, z.shape[-1:] if z.ndim else (), "pos_weight", op)
    # written as the plain loss max(z, 0) - z t + log(1 + exp(-|z|)) (gradient s(z) - t) plus the
    # pos_weight term (p - 1) t (log(1 + exp(-|z|)) + max(-z, 0)) = -(p - 1) t log s(z): no 1 - s cancels
    softplus_neg = np.log1p(np.exp(-np.abs(z))) + np.maximum(-z, 0)  # -log s(z)
    losses = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    d = _sigmoid(z) - t
    if p is not None:
        losses = losses + (p - 1.0) * t * softplus_neg
        d = d - (p - 1.0) * t * _sigmoid(-z)
    if w is not None:
        losses, d = losses * w, d * w
    return losses, d


def binary_cross_entropy_with_logits_forward(logits, target, reduction="mean", weight=None, pos_weight=None):
    """loss = mean(w (-p t log s(z) - (1 - t) log(1 - s(z)))) over all elements (see _bce_parts)."""
    op = "binary_cross_entropy_with_logits_forward"
    losses, _ = _bce_parts(logits, target, op, weight, pos_weight)
    return _reduce(losses, reduction, losses.size, op)


def binary_cross_entropy_with_logits_backward(logits, target, grad=1.0, reduction="mean", weight=None,
                                              pos_weight=None):
    """d loss / d z = w (s(z) - t - (p - 1) t s(-z)) * grad / n."""
    op = "binary_cross_entropy_with_logits_backward"
    _, d = _bce_parts(logits, target, op, weight, pos_weight)
    return (d * _upstream(grad, reduction, d.shape, op) * _scale(reduction, d.size, op)).astype(logits.dtype)


def binary_cross_entropy_with_logits_forward_backward(logits, target, reduction="mean", **options):
    """(forward, backward with grad = 1)."""
    return (
        binary_cross_entropy_with_logits_forward(logits, target, reduction, **options),
        binary_cross_entropy_with_logits_backward(logits, target, 1.0, reduction, **options),
    )


def _elementwise(kind, x, t, param):
    """Losses and derivatives d loss / d x of u = x - t: squared u^2; l1 |u|; smooth_l1 (beta)
    u^2 / (2 beta) for |u| < beta else |u| - beta / 2 (beta 0: |u|); huber (delta) u^2 / 2 for
    |u| < delta else delta (|u| - delta / 2)."""
    u = x - t
    a = np.abs(u)
    if kind == "mse":
        return u * u, 2 * u
    if kind == "l1":
        return a, np.sign(u)
    if kind == "smooth_l1":
        inner = a < param
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(inner, 0.5 * u * u / param, a - 0.5 * param), np.where(inner, u / param, np.sign(u))
    inner = a < param
    return np.where(inner, 0.5 * u * u, param * (a - 0.5 * param)), np.where(inner, u, param * np.sign(u))


def _elementwise_forward(kind, op, input, target, reduction, param=None):
    x, t = _check_pair(input, target, "input", op)
    losses, _ = _elementwise(kind, x, t, param)
    return _reduce(losses, reduction, x.size, op)


def _elementwise_backward(kind, op, input, target, grad, reduction, param=None):
    x, t = _check_pair(input, target, "input", op)
    _, d = _elementwise(kind, x, t, param)
    return (d * _upstream(grad, reduction, x.shape, op) * _scale(reduction, x.size, op)).astype(input.dtype)


def mse_forward(input, target, reduction="mean"):
    """loss = sum((x - t)^2) / n."""
    return _elementwise_forward("mse", "mse_forward", input, target, reduction)


def mse_backward(input, target, grad=1.0, reduction="mean"):
    """d loss / d x = 2 (x - t) * grad / n."""
    return _elementwise_backward("mse", "mse_backward", input, target, grad, reduction)


def mse_forward_backward(input, target, reduction="mean"):
    """(mse_forward, mse_backward with grad = 1)."""
    return mse_forward(input, target, reduction), mse_backward(input, target, 1.0, reduction)


def l1_forward(input, target, reduction="mean"):
    """loss = sum |x - t| / n."""
    return _elementwise_forward("l1", "l1_forward", input, target, reduction)


def l1_backward(input, target, grad=1.0, reduction="mean"):
    """d loss / d x = sign(x - t) * grad / n (0 where x = t, as torch)."""
    return _elementwise_backward("l1", "l1_backward", input, target, grad, reduction)


def l1_forward_backward(input, target, reduction="mean"):
    return l1_forward(input, target, reduction), l1_backward(input, target, 1.0, reduction)


def _check_param(value, name, op, positive):
    value = float(value)
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"[{op}] {name} must be {'> 0' if positive else '>= 0'}, got {value}")
    return value


def smooth_l1_forward(input, target, reduction="mean", beta=1.0):
    """torch's SmoothL1Loss (see _elementwise)."""
    op = "smooth_l1_forward"
    return _elementwise_forward("smooth_l1", op, input, target, reduction, _check_param(beta, "beta", op, False))


def smooth_l1_backward(input, target, grad=1.0, reduction="mean", beta=1.0):
    op = "smooth_l1_backward"
    return _elementwise_backward("smooth_l1", op, input, target, grad, reduction, _check_param(beta, "beta", op, False))


def smooth_l1_forward_backward(input, target, reduction="mean", beta=1.0):
    return (smooth_l1_forward(input, target, reduction, beta), smooth_l1_backward(input, target, 1.0, reduction, beta))


def huber_forward(input, target, reduction="mean", delta=1.0):
    """torch's HuberLoss (see _elementwise): delta * smooth_l1 with beta = delta."""
    op = "huber_forward"
    return _elementwise_forward("huber", op, input, target, reduction, _check_param(delta, "delta", op, True))


def huber_backward(input, target, grad=1.0, reduction="mean", delta=1.0):
    op = "huber_backward"
    return _elementwise_backward("huber", op, input, target, grad, reduction, _check_param(delta, "delta", op, True))


def huber_forward_backward(input, target, reduction="mean", delta=1.0):
    return huber_forward(input, target, reduction, delta), huber_backward(input, target, 1.0, reduction, delta)
