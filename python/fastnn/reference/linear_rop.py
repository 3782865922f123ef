"""The forward of a Linear layer and the direction's part of its R-operator, in one call.

    y = act(x W^T + b),   r = x V^T + v_b

r is R{z} of z = x W^T + b along the direction (V, v_b) when R{x} = 0 (the model's input); the
R{x} W^T term of R{z} = x V^T + v_b + R{x} W^T is the layer's to add.
"""

import numpy as np

from .linear import linear_forward

__all__ = ["linear_forward_pair"]


def linear_forward_pair(x, weight, bias, v_weight, v_bias, activation="none", negative_slope=0.01):
    """(y, r) as above; x (N, in), weight and v_weight (out, in), bias and v_bias (out,) or None."""
    y = linear_forward(x, weight, bias, activation, negative_slope)
    r = x.astype(np.float64) @ v_weight.astype(np.float64).T
    if v_bias is not None:
        r = r + v_bias
    return y, r.astype(x.dtype)
