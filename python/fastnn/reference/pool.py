"""2-D pooling over NCHW feature maps, PyTorch's semantics (kernels/pool.h).

Output size per axis (PyTorch's pooling_output_shape), k the kernel, s the stride (default k), pad
the padding (at most k // 2), d the dilation:
    P = (H + 2 pad - d (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1,
less one if ceil_mode made the last window start at or after H + pad (inside the right padding).
Window p of an axis covers input indices p s - pad + i d, i = 0 ... k - 1.

max_pool2d: y = the window's maximum over its in-bounds taps, indices = h W + w of the first tap
reaching it in (i, j) C order (a NaN wins over everything and over earlier NaNs, as in PyTorch);
the backward adds each gradient to its index. With dilation a window can fall between the pixels
(H = 2, kernel 2, padding 1, dilation 3): its maximum is over no tap, -inf with index -1, and it
passes no gradient (PyTorch 2.13 returns an out-of-range index there, and its backward aborts).
avg_pool2d, adaptive_avg_pool2d: the average of a window is separable, y = (B_h x B_w^T) / divisor
with B (P, H) the 0/1 window matrix of an axis and divisor = cnt_h[p] cnt_w[q]; the backward is the
adjoint, dx = B_h^T (g / divisor) B_w.
"""

import numbers

import numpy as np

from .im2col import _check_nchw, _pair

__all__ = [
    "adaptive_avg_pool2d_backward", "adaptive_avg_pool2d_forward", "avg_pool2d_backward", "avg_pool2d_forward",
    "global_avg_pool2d_backward", "global_avg_pool2d_forward", "max_pool2d_backward", "max_pool2d_forward",
    "pool_output_size", "max_pool2d_gather",
]


def _pool_args(kernel_size, stride, padding, dilation, op):
    k = _pair(kernel_size, "kernel_size", op)
    s = k if stride is None else _pair(stride, "stride", op)
    pad = _pair(padding, "padding", op, 0)
    d = _pair(dilation, "dilation", op)
    if pad[0] > k[0] // 2 or pad[1] > k[1] // 2:  # PyTorch's pool2d_shape_check: the kernel without dilation
        raise ValueError(f"[{op}] padding should be at most half of kernel_size, got padding={pad}, kernel_size={k}")
    return k, s, pad, d


def _axis_size(n, k, s, pad, d, ceil_mode):
    out = (n + 2 * pad - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + pad:
        out -= 1
    return out


def pool_output_size(input_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                     op="pool_output_size"):
    """(P, Q) of a pooling window (formula above); a ValueError if either is < 1.

    Args:
        input_size: (H, W).
    """
    k, s, pad, d = _pool_args(kernel_size, stride, padding, dilation, op)
    P, Q = (_axis_size(input_size[a], k[a], s[a], pad[a], d[a], ceil_mode) for a in range(2))
    if P < 1 or Q < 1:
        raise ValueError(f"[{op}] input {tuple(input_size)} with kernel_size={k}, padding={pad}, dilation={d} "
                         f"gives output size {(P, Q)}")
    return P, Q


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """y[n, c, p, q] = max over in-bounds taps (i, j) of x[n, c, p sh - ph + i dh, q sw - pw + j dw].

    Args:
        x: (N, C, H, W) float32/float64.
        kernel_size, stride (default kernel_size), padding, dilation: int or (h, w) pair.
        ceil_mode: round the output size up (windows may run past the right padding).
    Returns:
        (y (N, C, P, Q), indices (N, C, P, Q) int64: flat h*W + w in the input plane of each maximum,
        -1 for a window without an in-bounds tap).
    """
    op = "max_pool2d_forward"
    _check_nchw(x.shape, "x", op)
    k, s, pad, d = _pool_args(kernel_size, stride, padding, dilation, op)
    N, C, H, W = x.shape
    P, Q = pool_output_size((H, W), k, s, pad, d, ceil_mode, op)
    y = np.full((N, C, P, Q), -np.inf, dtype=x.dtype)
    indices = np.full((N, C, P, Q), -1, dtype=np.int64)
    for i in range(k[0]):
        h = np.arange(P) * s[0] - pad[0] + i * d[0]
        hv = (h >= 0) & (h < H)
        for j in range(k[1]):
            w = np.arange(Q) * s[1] - pad[1] + j * d[1]
            wv = (w >= 0) & (w < W)
            valid = hv[:, None] & wv[None, :]  # (P, Q): taps in the padding do not count
            v = x[:, :, np.clip(h, 0, H - 1)[:, None], np.clip(w, 0, W - 1)[None, :]]
            better = valid & ((indices < 0) | (v > y) | np.isnan(v))
            y = np.where(better, v, y)
            indices = np.where(better, h[:, None] * W + w[None, :], indices)
    return y, indices


def max_pool2d_backward(grad_out, indices, input_shape):
    """dx[n, c].flat[indices[n, c, p, q]] += grad_out[n, c, p, q] (overlapping windows add up; -1 adds nothing).

    Args:
        grad_out: (N, C, P, Q) float32/float64.
        indices: (N, C, P, Q) int64 from max_pool2d_forward.
        input_shape: (N, C, H, W).
    Returns:
        grad_input: (N, C, H, W), grad_out's dtype.
    """
    op = "max_pool2d_backward"
    _check_nchw(input_shape, "input_shape", op)
    N, C, H, W = input_shape
    if grad_out.ndim != 4 or grad_out.shape[:2] != (N, C) or indices.shape != grad_out.shape:
        raise ValueError(f"[{op}] grad_out {grad_out.shape} and indices {indices.shape} must be (N, C, P, Q) "
                         f"with (N, C) = {(N, C)}")
    if indices.size and (indices.min() < -1 or indices.max() >= H * W):
        raise ValueError(f"[{op}] indices must be -1 or in [0, H*W) = [0, {H * W})")
    dx = np.zeros((N * C, H * W + 1), dtype=grad_out.dtype)  # column H*W collects the windows without a tap
    rows = np.broadcast_to(np.arange(N * C)[:, None], (N * C, indices[0, 0].size))
    np.add.at(dx, (rows, np.where(indices < 0, H * W, indices).reshape(N * C, -1)), grad_out.reshape(N * C, -1))
    return np.ascontiguousarray(dx[:, :H * W]).reshape(N, C, H, W)


def max_pool2d_gather(x, indices):
    """y[n, c, p, q] = x[n, c].flat[indices[n, c, p, q]], 0 where the index is -1: a max pool's
    linearization at its kept argmax (the R-operator's forward), the adjoint of max_pool2d_backward.

    Args:
        x: (N, C, H, W) float32/float64.
        indices: (N, C, P, Q) int64 from max_pool2d_forward (-1 or in [0, H*W)).
    Returns:
        y: (N, C, P, Q), x's dtype.
    """
    op = "max_pool2d_gather"
    _check_nchw(x.shape, "x", op)
    N, C, H, W = x.shape
    if indices.ndim != 4 or indices.shape[:2] != (N, C):
        raise ValueError(f"[{op}] indices {indices.shape} must be (N, C, P, Q) with (N, C) = {(N, C)}")
    if indices.dtype != np.int64:
        raise TypeError(f"[{op}] indices must be int64, got {indices.dtype}")
    if indices.size and (indices.min() < -1 or indices.max() >= H * W):
        raise ValueError(f"[{op}] indices must be -1 or in [0, H*W) = [0, {H * W})")
    flat = x.reshape(N, C, H * W)
    y = np.take_along_axis(flat, np.maximum(indices, 0).reshape(N, C, -1), axis=2).reshape(indices.shape)
    return np.where(indices < 0, 0, y).astype(x.dtype)


def _window_matrix(starts, ends, n, dtype):
    """B[p, h] = 1 where starts[p] <= h < ends[p]: the taps of each window of one axis."""
    h = np.arange(n)
    return ((h >= starts[:, None]) & (h < ends[:, None])).astype(dtype)


def _avg_axis(n, k, s, pad, ceil_mode, count_include_pad, dtype):
    """Window matrix and divisor of one axis of avg_pool2d (PyTorch's avg_pool2d_out_frame)."""
    start = np.arange(_axis_size(n, k, s, pad, 1, ceil_mode)) * s - pad
    end = np.minimum(start + k, n + pad)  # a window past the right padding (ceil_mode) counts only up to it
    size = end - start
    start, end = np.maximum(start, 0), np.minimum(end, n)
    return _window_matrix(start, end, n, dtype), size if count_include_pad else end - start


def _avg_geometry(x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, dtype, op):
    _check_nchw(x_shape, "x", op)
    k, s, pad, _ = _pool_args(kernel_size, stride, padding, 1, op)
    if divisor_override is not None and (isinstance(divisor_override, bool)
                                         or not isinstance(divisor_override, numbers.Integral) or divisor_override == 0):
        raise ValueError(f"[{op}] divisor_override must be a nonzero int or None, got {divisor_override!r}")
    pool_output_size(x_shape[2:], k, s, pad, 1, ceil_mode, op)
    bh, ch = _avg_axis(x_shape[2], k[0], s[0], pad[0], ceil_mode, count_include_pad, dtype)
    bw, cw = _avg_axis(x_shape[3], k[1], s[1], pad[1], ceil_mode, count_include_pad, dtype)
    divisor = np.full((len(ch), len(cw)), divisor_override) if divisor_override is not None else np.outer(ch, cw)
    return bh, bw, divisor.astype(dtype)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                       divisor_override=None):
    """y[n, c, p, q] = sum of x over window (p, q) clipped to the input / divisor[p, q].

    divisor = divisor_override if given, else the window's size counting the padding
    (count_include_pad; clipped at the right padding in ceil_mode) or only its in-bounds taps.

    Args:
        x: (N, C, H, W) float32/float64.
        kernel_size, stride (default kernel_size), padding: int or (h, w) pair.
        ceil_mode, count_include_pad, divisor_override: as torch.nn.functional.avg_pool2d's.
    Returns:
        y: (N, C, P, Q).
    """
    bh, bw, divisor = _avg_geometry(x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                    divisor_override, x.dtype, "avg_pool2d_forward")
    return bh @ x @ bw.T / divisor


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """dx = B_h^T (grad_out / divisor) B_w: each window's gradient / divisor to each in-bounds tap.

    Args:
        grad_out: (N, C, P, Q) float32/float64.
        input_shape: (N, C, H, W); the other arguments as given to avg_pool2d_forward.
    Returns:
        grad_input: (N, C, H, W).
    """
    op = "avg_pool2d_backward"
    bh, bw, divisor = _avg_geometry(input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                    divisor_override, grad_out.dtype, op)
    _check_grad(grad_out, input_shape, divisor.shape, op)
    return bh.T @ (grad_out / divisor) @ bw


def _check_grad(grad_out, input_shape, out_size, op):
    expected = tuple(input_shape[:2]) + tuple(out_size)
    if grad_out.shape != expected:
        raise ValueError(f"[{op}] grad_out must be {expected}, got {grad_out.shape}")


def _adaptive_geometry(x_shape, output_size, dtype, op):
    """Window matrices and divisor: start = floor(p H / P), end = ceil((p + 1) H / P) (PyTorch's
    start_index / end_index); None in output_size keeps that axis's input size."""
    _check_nchw(x_shape, "x", op)
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise ValueError(f"[{op}] output_size must be an int or a pair, got {output_size!r}")
    sizes = tuple(x_shape[2 + a] if sizes[a] is None else sizes[a] for a in range(2))
    P, Q = _pair(sizes, "output_size", op)
    bs, cs = [], []
    for n, m in ((x_shape[2], P), (x_shape[3], Q)):
        if n < 1:
            raise ValueError(f"[{op}] input spatial size must be >= 1, got {tuple(x_shape[2:])}")
        p = np.arange(m)
        start, end = (p * n) // m, -((-(p + 1) * n) // m)
        bs.append(_window_matrix(start, end, n, dtype))
        cs.append(end - start)
    return bs[0], bs[1], np.outer(cs[0], cs[1]).astype(dtype)


def adaptive_avg_pool2d_forward(x, output_size):
    """y[n, c, p, q] = mean of x[n, c, start_h(p):end_h(p), start_w(q):end_w(q)],
    start(p) = floor(p H / P), end(p) = ceil((p + 1) H / P).

    Args:
        x: (N, C, H, W) float32/float64.
        output_size: int or (P, Q) pair (None keeps the input's size on that axis).
    Returns:
        y: (N, C, P, Q).
    """
    bh, bw, divisor = _adaptive_geometry(x.shape, output_size, x.dtype, "adaptive_avg_pool2d_forward")
    return bh @ x @ bw.T / divisor


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    """dx = B_h^T (grad_out / divisor) B_w (the output size is grad_out's).

    Args:
        grad_out: (N, C, P, Q) float32/float64.
        input_shape: (N, C, H, W).
    Returns:
        grad_input: (N, C, H, W).
    """
    op = "adaptive_avg_pool2d_backward"
    if grad_out.ndim != 4:
        raise ValueError(f"[{op}] grad_out must be (N, C, P, Q), got {grad_out.shape}")
    bh, bw, divisor = _adaptive_geometry(input_shape, grad_out.shape[2:], grad_out.dtype, op)
    _check_grad(grad_out, input_shape, divisor.shape, op)
    return bh.T @ (grad_out / divisor) @ bw


def global_avg_pool2d_forward(x):
    """y[n, c] = mean over (h, w) of x[n, c] (adaptive_avg_pool2d(x, 1) without the 1x1 axes).

    Args:
        x: (N, C, H, W) float32/float64.
    Returns:
        y: (N, C).
    """
    _check_nchw(x.shape, "x", "global_avg_pool2d_forward")
    return x.mean(axis=(2, 3))


def global_avg_pool2d_backward(grad_out, input_shape):
    """dx[n, c, h, w] = grad_out[n, c] / (H W).

    Args:
        grad_out: (N, C) float32/float64.
        input_shape: (N, C, H, W).
    Returns:
        grad_input: (N, C, H, W).
    """
    op = "global_avg_pool2d_backward"
    _check_nchw(input_shape, "input_shape", op)
    N, C, H, W = input_shape
    if grad_out.shape != (N, C):
        raise ValueError(f"[{op}] grad_out must be {(N, C)}, got {grad_out.shape}")
    return np.broadcast_to((grad_out / grad_out.dtype.type(H * W))[:, :, None, None], input_shape).copy()
