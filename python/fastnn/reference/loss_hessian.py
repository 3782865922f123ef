"""Curvature of the losses (kernels/loss_hessian.h): H r, H the Hessian of scale * sum_i loss_i with
respect to the model output z, in NumPy (float64)."""

import numpy as np

__all__ = ["bce_with_logits_hessian_vector", "cross_entropy_hessian_vector", "mse_hessian_vector"]


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy_hessian_vector(logits, target, r, scale=1.0):
    """(H r)_i = scale * s_i (p_i * r_i - p_i (p_i . r_i)), p = softmax(z), s_i = sum_c t_ic (1 for labels)."""
    z, r = np.asarray(logits, np.float64), np.asarray(r, np.float64)
    p = _softmax(z)
    t = np.asarray(target)
    s = np.ones(len(z)) if t.ndim == 1 else t.astype(np.float64).sum(axis=1)
    return scale * s[:, None] * (p * r - p * (p * r).sum(axis=1, keepdims=True))


def bce_with_logits_hessian_vector(logits, r, scale=1.0):
    """H r = scale * sigmoid(z) (1 - sigmoid(z)) r, elementwise."""
    s = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
    return scale * s * (1 - s) * np.asarray(r, np.float64)


def mse_hessian_vector(r, scale=1.0):
    """H r = 2 scale r."""
    return 2 * scale * np.asarray(r, np.float64)
