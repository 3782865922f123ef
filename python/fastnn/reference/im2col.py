"""Patches of an NCHW image as the rows of a matrix, and the adjoint that sums them back (kernels/im2col.h).

Layout (the one the GEMM of conv2d wants: one product over the whole minibatch, K = C*kh*kw):
    cols[(n*P + p)*Q + q, (c*kh + i)*kw + j] = x[n, c, p*sh + i*dh - ph, q*sw + j*dw - pw]
(0 where the index falls in the padding). Rows are the N*P*Q output positions (n, p, q) in C order,
columns the C*kh*kw taps (c, i, j) in C order, which is weight.reshape(out, C*kh*kw)'s column
order, so ``cols @ weight.reshape(out, -1).T`` is the (N*P*Q, out) output in NHWC order, and the
taps of the channels of a group are one contiguous column block.
P = (H + 2 ph - dh (kh - 1) - 1) // sh + 1 and Q likewise (PyTorch's Conv2d output size).

col2im is the adjoint (transpose) of im2col: every entry of cols is added to the pixel it was read
from, so overlapping patches sum and taps in the padding are dropped;
<im2col(x), y> = <x, col2im(y)> for all x, y.
"""

import numbers

import numpy as np

__all__ = ["col2im", "conv_output_size", "im2col"]


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _pair(v, name, op, minimum=1):
    """An int or a pair of ints, each >= minimum, as (h, w)."""
    pair = (v, v) if _is_int(v) else tuple(v) if isinstance(v, (tuple, list)) else ()
    if len(pair) != 2 or not all(_is_int(e) for e in pair):
        raise TypeError(f"[{op}] {name} must be an int or a pair of ints, got {v!r}")
    if min(pair) < minimum:
        raise ValueError(f"[{op}] {name} must be >= {minimum}, got {v!r}")
    return int(pair[0]), int(pair[1])


def _geometry(kernel_size, stride, padding, dilation, op):
    return (_pair(kernel_size, "kernel_size", op), _pair(stride, "stride", op), _pair(padding, "padding", op, 0),
            _pair(dilation, "dilation", op))


def _check_nchw(shape, name, op):
    if len(shape) != 4:
        raise ValueError(f"[{op}] {name} must be (N, C, H, W), got {tuple(shape)}")


def conv_output_size(input_size, kernel_size, stride=1, padding=0, dilation=1, op="conv_output_size"):
    """(P, Q) = ((H + 2 ph - dh (kh - 1) - 1) // sh + 1, same for W); a ValueError if either is < 1.

    Args:
        input_size: (H, W).
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _geometry(kernel_size, stride, padding, dilation, op)
    H, W = input_size
    P = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if P < 1 or Q < 1:
        raise ValueError(
            f"[{op}] the (dilated) kernel {(dh * (kh - 1) + 1, dw * (kw - 1) + 1)} is larger than the padded input "
            f"{(H + 2 * ph, W + 2 * pw)}: output size {(P, Q)}"
        )
    return P, Q


def _taps(P, Q, stride, dilation, i, j):
    """The (rows, cols) slices of the padded input that kernel tap (i, j) reads, one per output position."""
    (sh, sw), (dh, dw) = stride, dilation
    return slice(i * dh, i * dh + sh * (P - 1) + 1, sh), slice(j * dw, j * dw + sw * (Q - 1) + 1, sw)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """cols[(n, p, q), (c, i, j)] = x_padded[n, c, p sh + i dh, q sw + j dw] (layout above).

    Args:
        x: (N, C, H, W) float32/float64.
        kernel_size, stride, padding, dilation: int or (h, w) pair, as torch.nn.Conv2d's.
    Returns:
        cols: (N*P*Q, C*kh*kw), x's dtype.
    """
    _check_nchw(x.shape, "x", "im2col")
    k, s, pad, d = _geometry(kernel_size, stride, padding, dilation, "im2col")
    N, C, H, W = x.shape
    P, Q = conv_output_size((H, W), k, s, pad, d, "im2col")
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    cols = np.empty((N, P, Q, C, k[0], k[1]), dtype=x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _taps(P, Q, s, d, i, j)
            cols[..., i, j] = xp[:, :, rows, columns].transpose(0, 2, 3, 1)
    return cols.reshape(N * P * Q, C * k[0] * k[1])


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """The adjoint of im2col: x[n, c, h, w] = sum of cols[(n, p, q), (c, i, j)] over the taps with
    p sh + i dh - ph = h and q sw + j dw - pw = w.

    Args:
        cols: (N*P*Q, C*kh*kw) float32/float64.
        input_shape: (N, C, H, W) of the image im2col read.
        kernel_size, stride, padding, dilation: as given to im2col.
    Returns:
        x: (N, C, H, W), cols' dtype.
    """
    _check_nchw(input_shape, "input_shape", "col2im")
    k, s, pad, d = _geometry(kernel_size, stride, padding, dilation, "col2im")
    N, C, H, W = input_shape
    P, Q = conv_output_size((H, W), k, s, pad, d, "col2im")
    if cols.shape != (N * P * Q, C * k[0] * k[1]):
        raise ValueError(f"[col2im] cols must be (N*P*Q, C*kh*kw) = {(N * P * Q, C * k[0] * k[1])}, got {cols.shape}")
    patches = cols.reshape(N, P, Q, C, k[0], k[1])
    xp = np.zeros((N, C, H + 2 * pad[0], W + 2 * pad[1]), dtype=cols.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _taps(P, Q, s, d, i, j)
            xp[:, :, rows, columns] += patches[..., i, j].transpose(0, 3, 1, 2)  # one tap: distinct pixels
    return np.ascontiguousarray(xp[:, :, pad[0]:pad[0] + H, pad[1]:pad[1] + W])
