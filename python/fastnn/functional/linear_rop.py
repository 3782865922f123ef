"""linear_rop: the forward of a Linear layer and the direction's part of its R-operator in one pass
over x (kernels/linear_rop.h; reference/linear_rop.py is the specification)."""

from .._config import _C


def linear_forward_pair(x, weight, bias, v_weight, v_bias, activation="none", negative_slope=0.01):
    """(y, r) with y = act(x W^T + b) and r = x V^T + v_b, from one product of x with [W; V].

    Args:
        x: (N, in) float32/float64, C-contiguous.
        weight, v_weight: (out, in) the weights and their direction; bias, v_bias: (out,) or None.
        activation: "none", "relu", "leaky_relu", "sigmoid" or "tanh" (applied to y only).
    """
    return _C.linear_forward_pair(x, weight, bias, v_weight, v_bias, activation, negative_slope)
