"""Pointwise activations and their derivatives (kernels/activations.h).

Softmax / log_softmax (softmax.py) and maxout (maxout.py) have their own modules. Python float
parameters combine with arrays in the arrays' dtype (NEP 50), so float32 in is float32 out.
"""

import numpy as np

from . import rng

__all__ = [
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "elu_forward", "elu_backward", "selu_forward", "selu_backward",
    "prelu_forward", "prelu_backward", "rrelu_forward", "rrelu_backward",
]  # fmt: skip

# PyTorch's SELU constants (Klambauer et al. 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def sigmoid_forward(x):
    """sigma(x) = 1 / (1 + exp(-x)), evaluated as e / (1 + e) with e = exp(x) for x < 0 (no overflow)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(grad_out, y):
    """d sigma / dx = y (1 - y)."""
    return grad_out * y * (1 - y)


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(grad_out, y):
    """d tanh / dx = 1 - y^2."""
    return grad_out * (1 - y * y)


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(grad_out, y):
    """The gradient passes where y > 0."""
    return np.where(y > 0, grad_out, 0)


def leaky_relu_forward(x, negative_slope=0.01):
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    return np.where(x > 0, grad_out, negative_slope * grad_out)


def elu_forward(x, alpha=1.0):
    """x if x > 0 else alpha (exp(x) - 1)."""
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_backward(grad_out, x, alpha=1.0):
    """1 if x > 0 else alpha exp(x)."""
    return np.where(x > 0, grad_out, grad_out * (alpha * np.exp(np.minimum(x, 0))))


def selu_forward(x):
    """scale * elu(x, alpha)."""
    return np.where(x > 0, SELU_SCALE * x, SELU_SCALE * SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def selu_backward(grad_out, x):
    """scale if x > 0 else scale alpha exp(x)."""
    return np.where(x > 0, grad_out * SELU_SCALE, grad_out * (SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(x, 0))))


def _channel_weight(x, weight):
    """weight (C,) shaped to broadcast along dim 1 of x; a (1,) weight is shared by everything."""
    if weight.shape == (1,):
        return weight.reshape(())
    return weight.reshape((1, -1) + (1,) * (x.ndim - 2))


def prelu_forward(x, weight):
    """x if x > 0 else w[c] x."""
    return np.where(x > 0, x, _channel_weight(x, weight) * x)


def prelu_backward(grad_out, x, weight):
    """grad_in = g if x > 0 else w[c] g;  grad_w[c] = sum of g x over channel c where x < 0."""
    grad_in = np.where(x > 0, grad_out, _channel_weight(x, weight) * grad_out)
    contrib = np.where(x < 0, grad_out * x, 0)
    if weight.shape == (1,):
        grad_weight = contrib.sum(dtype=np.float64).reshape(1)
    else:
        axes = (0,) + tuple(range(2, x.ndim))
        grad_weight = contrib.sum(axis=axes, dtype=np.float64)
    return grad_in, grad_weight.astype(weight.dtype)


def rrelu_forward(x, lower=1.0 / 8, upper=1.0 / 3, training=False, seed=0, step=0):
    """y = x if x > 0 else a x;  noise = 1 if x > 0 else a (at x = 0 the slope, as PyTorch).

    Training: a = lower + (upper - lower) u, u = uniform from the counter-based stream (seed, step),
    element i (C order) taking draw i. Eval: a = (lower + upper) / 2.
    """
    if training:
        u = rng.uniform(rng.bits(rng.stream_key(seed, step), x.size), x.dtype).reshape(x.shape)
        a = lower + (upper - lower) * u
    else:
        a = np.full(x.shape, (lower + upper) / 2, dtype=x.dtype)
    noise = np.where(x > 0, 1, a)
    return x * noise, noise


def rrelu_backward(grad_out, noise):
    return grad_out * noise
