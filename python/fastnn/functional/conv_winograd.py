"""conv_winograd: wrappers of the Winograd F(2x2, 3x3) kernel, F(4x4, 3x3) for a forward of >= 64
output channels (reference/conv_winograd.py is the specification). conv2d_forward / conv2d_backward take it on their own for 3x3 stride-1 convolutions
of >= 16 input and >= 8 output channels over batches of >= 4 images; these call it at any shape."""

from .._config import _C

__all__ = ["conv3x3_winograd_forward", "conv3x3_winograd_input_grad", "conv3x3_winograd_weight_grad"]


def conv3x3_winograd_forward(x, weight, bias=None, padding=1):
    """conv2d(x, weight, bias, stride=1, padding=padding) for a 3x3 weight by Winograd F(2x2, 3x3)
    (F(4x4, 3x3) for >= 64 output channels: reference.output_tile).

    Args:
        x: (N, C, H, W) float32/float64; weight: (O, C, 3, 3), same dtype; bias: (O,) or None.
        padding: int or (ph, pw), >= 0.
    Returns:
        y: (N, O, H + 2 ph - 2, W + 2 pw - 2).
    """
    return _C.conv3x3_winograd_forward(x, weight, bias, padding)


def conv3x3_winograd_input_grad(grad_out, weight, padding=1):
    """The input gradient of conv3x3_winograd_forward(x, weight, padding=padding) for its
    grad_out (N, O, P, Q): the Winograd convolution of grad_out with the rotated, transposed kernel.
    padding <= 2. Returns (N, C, P - 2 ph + 2, Q - 2 pw + 2)."""
    return _C.conv3x3_winograd_input_grad(grad_out, weight, padding)


def conv3x3_winograd_weight_grad(grad_out, x, padding=1):
    """The weight gradient (O, C, 3, 3) of conv3x3_winograd_forward(x, weight, padding=padding) for
    its grad_out (N, O, P, Q), by the transposed Winograd transform (16 GEMMs of depth N x tiles)."""
    return _C.conv3x3_winograd_weight_grad(grad_out, x, padding)
