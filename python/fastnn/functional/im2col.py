"""im2col: wrappers of the C++ kernels (reference/im2col.py is the specification)."""

from .._config import _C


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """The patches of an NCHW image as the rows of a matrix (the layout conv2d's GEMM reads):
    ``cols[(n*P + p)*Q + q, (c*kh + i)*kw + j] = x[n, c, p*sh + i*dh - ph, q*sw + j*dw - pw]``
    (0 in the padding); ``P = (H + 2 ph - dh (kh - 1) - 1) // sh + 1``, Q likewise.

    Args:
        x: (N, C, H, W) float32/float64.
        kernel_size, stride, padding, dilation: int or (h, w) pair, as torch.nn.Conv2d's.
    Returns:
        cols: (N*P*Q, C*kh*kw), x's dtype.
    """
    return _C.im2col(x, kernel_size, stride, padding, dilation)


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """The adjoint of :func:`im2col`: every entry of cols is added to the pixel it was read from
    (overlapping patches sum, taps in the padding are dropped).

    Args:
        cols: (N*P*Q, C*kh*kw) float32/float64.
        input_shape: (N, C, H, W) of the image im2col read.
        kernel_size, stride, padding, dilation: as given to im2col.
    Returns:
        x: (N, C, H, W), cols' dtype.
    """
    return _C.col2im(cols, input_shape, kernel_size, stride, padding, dilation)
