"""softmax and log_softmax over the last axis and their derivatives (kernels/softmax.h)."""

import numpy as np

__all__ = ["softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward"]


def softmax_forward(x):
    """exp(x - max) / sum(exp(x - max)); subtracting the row max keeps exp <= 1."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(grad_out, y):
    """J^T g for J = diag(y) - y y^T:  y * (g - sum(g * y))."""
    return y * (grad_out - (grad_out * y).sum(axis=-1, keepdims=True))


def log_softmax_forward(x):
    """x - max - log(sum(exp(x - max)))."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_softmax_backward(grad_out, y):
    """g - softmax(x) * sum(g), with softmax(x) = exp(y)."""
    return grad_out - np.exp(y) * grad_out.sum(axis=-1, keepdims=True)
