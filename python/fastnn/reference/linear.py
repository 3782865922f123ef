"""Linear (fully connected) layer with a fused activation, PyTorch layout (weight is (out, in)).

Forward:  z = x W^T + b,  y = act(z).
Backward: g = dL/dy * act'(z), with act' written in terms of the output y;
          dL/dx = g W,  dL/dW = g^T x,  dL/db = sum over the batch of g.
"""

import numpy as np

__all__ = ["linear_backward", "linear_forward"]

ACTIVATIONS = ("none", "relu", "leaky_relu", "sigmoid", "tanh")


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {activation!r}")


def _sigmoid(z):
    """1 / (1 + e^-z), written so that no exponential overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _activate(z, activation, negative_slope):
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "leaky_relu":
        return np.where(z > 0, z, negative_slope * z)
    if activation == "sigmoid":
        return _sigmoid(z)
    if activation == "tanh":
        return np.tanh(z)
    return z


def _derivative_from_output(y, activation, negative_slope):
    """act'(z) as a function of y = act(z)."""
    if activation == "relu":
        return (y > 0).astype(y.dtype)
    if activation == "leaky_relu":
        return np.where(y > 0, 1, negative_slope).astype(y.dtype)
    if activation == "sigmoid":
        return y * (1 - y)
    if activation == "tanh":
        return 1 - y * y
    return np.ones_like(y)


def linear_forward(x, weight, bias=None, activation="none", negative_slope=0.01):
    """y = act(x W^T + b)."""
    _check_activation(activation)
    z = x @ weight.T
    if bias is not None:
        z = z + bias
    return _activate(z, activation, negative_slope)


def linear_backward(grad_out, x, weight, y=None, activation="none", negative_slope=0.01,
                    need_input_grad=True, need_bias_grad=True, grad_weight_out=None, grad_bias_out=None):
    """g = grad_out * act'(y);  (g W, g^T x, sum_n g), the last two added to *_out when given."""
    _check_activation(activation)
    if activation != "none" and y is None:
        raise ValueError(f"y (the output of linear_forward) is required for activation {activation!r}")
    if activation == "leaky_relu" and not negative_slope > 0:
        raise ValueError(f"leaky_relu backward needs negative_slope > 0, got {negative_slope}")
    if grad_bias_out is not None and not need_bias_grad:
        raise ValueError("grad_bias_out is given but need_bias_grad is False")
    g = grad_out if activation == "none" else grad_out * _derivative_from_output(y, activation, negative_slope)
    grad_input = g @ weight if need_input_grad else None
    grad_weight = g.T @ x
    if grad_weight_out is not None:
        grad_weight_out += grad_weight
        grad_weight = grad_weight_out
    grad_bias = g.sum(axis=0) if need_bias_grad else None
    if grad_bias_out is not None:
        grad_bias_out += grad_bias
        grad_bias = grad_bias_out
    return grad_input, grad_weight, grad_bias
