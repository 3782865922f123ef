"""loss_hessian: H r for the losses, H the Hessian of scale * (sum of the per-sample losses) with
respect to the logits (kernels/loss_hessian.h; reference/loss_hessian.py is the specification).
scale = 1/N for a mean cross-entropy, 1/(N C) for a mean BCE or MSE."""

from .._config import _C


def cross_entropy_hessian_vector(logits, target, r, scale=1.0):
    """scale * s_i (p_i * r_i - p_i (p_i . r_i)) with p = softmax(logits), s_i = sum of target row i
    (1 for labels). logits, r: (N, C); target: (N,) int labels or (N, C) probabilities."""
    return _C.cross_entropy_hessian_vector(logits, target, r, scale)


def bce_with_logits_hessian_vector(logits, r, scale=1.0):
    """scale * sigmoid(z) (1 - sigmoid(z)) r, elementwise."""
    return _C.bce_with_logits_hessian_vector(logits, r, scale)


def mse_hessian_vector(r, scale=1.0):
    """2 scale r."""
    return _C.mse_hessian_vector(r, scale)
