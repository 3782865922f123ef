"""linear: wrappers of the C++ kernels (reference/linear.py is the specification)."""

from .._config import _C
from ._common import _guard


def linear_forward(x, weight, bias=None, activation="none", negative_slope=0.01):
    """Fully connected layer with a fused bias and activation: ``y = act(x @ weight.T + bias)``.

    Args:
        x: (N, in) float32/float64; C order, Fortran order, transposed and column-sliced views
            are read in place.
        weight: (out, in), same dtype (PyTorch layout), read in place like x.
        bias: (out,) or None.
        activation: "none", "relu", "leaky_relu", "sigmoid" or "tanh".
        negative_slope: leaky_relu's slope for negative inputs.
    Returns:
        y: (N, out) array.
    """
    with _guard(x, weight, 0):
        return _C.linear_forward(x, weight, bias, activation, negative_slope)


def linear_backward(grad_out, x, weight, y=None, activation="none", negative_slope=0.01,
                    need_input_grad=True, need_bias_grad=True, grad_weight_out=None, grad_bias_out=None):
    """Gradients of :func:`linear_forward` from the upstream gradient and the saved output.

    ``g = grad_out * act'(y)`` (act' written in terms of y: relu ``y > 0``, leaky_relu
    ``1 if y > 0 else negative_slope``, sigmoid ``y (1 - y)``, tanh ``1 - y**2``), then
    ``grad_input = g @ weight``, ``grad_weight = g.T @ x``, ``grad_bias = g.sum(0)``.

    Args:
        grad_out: (N, out) float32/float64, same dtype as x.
        x: (N, in), the forward input (any layout, as in linear_forward).
        weight: (out, in).
        y: (N, out), the output of linear_forward; required unless activation is "none".
        activation, negative_slope: as given to linear_forward (leaky_relu needs negative_slope > 0).
        need_input_grad, need_bias_grad: skip those gradients (None is returned in their place).
        grad_weight_out: optional C-contiguous (out, in) array; grad_weight is added to it in place
            (``+=``, accumulating over calls) and it is returned.
        grad_bias_out: optional C-contiguous (out,) array, accumulated the same way.
    Returns:
        (grad_input (N, in) or None, grad_weight (out, in), grad_bias (out,) or None).
    """
    with _guard(grad_out, x):
        return _C.linear_backward(grad_out, x, weight, y, activation, negative_slope, need_input_grad,
                                  need_bias_grad, grad_weight_out, grad_bias_out)
