"""pool: wrappers of the C++ kernels (reference/pool.py is the specification)."""

from .._config import _C


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """2-D max pooling as torch.nn.functional.max_pool2d(..., return_indices=True): the maximum of
    each window's in-bounds taps (a NaN wins), and its flat index h*W + w in the input plane (-1 for
    a dilated window with no in-bounds tap, whose value is -inf).

    Args:
        x: (N, C, H, W) float32/float64.
        kernel_size, stride (default kernel_size), padding (at most kernel_size // 2), dilation:
            int or (h, w) pair.
        ceil_mode: round the output size up.
    Returns:
        (y (N, C, P, Q), indices (N, C, P, Q) int64).
    """
    return _C.max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool2d_backward(grad_out, indices, input_shape):
    """``dx[n, c].flat[indices[n, c, p, q]] += grad_out[n, c, p, q]`` (zero elsewhere).

    Args:
        grad_out: (N, C, P, Q) float32/float64.
        indices: (N, C, P, Q) int64 from max_pool2d_forward (-1 or in [0, H*W)).
        input_shape: (N, C, H, W).
    Returns:
        grad_input: (N, C, H, W).
    """
    return _C.max_pool2d_backward(grad_out, indices, input_shape)


def max_pool2d_gather(x, indices):
    """``y[n, c, p, q] = x[n, c].flat[indices[n, c, p, q]]`` (0 where the index is -1): the max
    pool's linearization at its argmax, which the R-operator applies to R{x}.

    Args:
        x: (N, C, H, W) float32/float64.
        indices: (N, C, P, Q) int64 from max_pool2d_forward (-1 or in [0, H*W)).
    Returns:
        y: (N, C, P, Q).
    """
    return _C.max_pool2d_gather(x, indices)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                       divisor_override=None):
    """2-D average pooling as torch.nn.functional.avg_pool2d: each window's sum over its in-bounds
    taps / divisor (divisor_override, else the window's size counting the padding when
    count_include_pad, else its in-bounds taps).

    Args:
        x: (N, C, H, W) float32/float64.
        kernel_size, stride (default kernel_size), padding: int or (h, w) pair.
        ceil_mode, count_include_pad, divisor_override: as torch's.
    Returns:
        y: (N, C, P, Q).
    """
    return _C.avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """The adjoint of :func:`avg_pool2d_forward`: each window's gradient / divisor to each of its taps.

    Args:
        grad_out: (N, C, P, Q) float32/float64.
        input_shape: (N, C, H, W); the other arguments as given to avg_pool2d_forward.
    Returns:
        grad_input: (N, C, H, W).
    """
    return _C.avg_pool2d_backward(grad_out, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                  divisor_override)


def adaptive_avg_pool2d_forward(x, output_size):
    """As torch.nn.functional.adaptive_avg_pool2d: output (p, q) is the mean of rows
    [floor(p H / P), ceil((p + 1) H / P)) and the columns likewise.

    Args:
        x: (N, C, H, W) float32/float64.
        output_size: int or (P, Q) pair; None keeps the input's size on that axis.
    Returns:
        y: (N, C, P, Q).
    """
    return _C.adaptive_avg_pool2d_forward(x, output_size)


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    """The adjoint of :func:`adaptive_avg_pool2d_forward` (the output size is grad_out's).

    Args:
        grad_out: (N, C, P, Q) float32/float64.
        input_shape: (N, C, H, W).
    Returns:
        grad_input: (N, C, H, W).
    """
    return _C.adaptive_avg_pool2d_backward(grad_out, input_shape)


def global_avg_pool2d_forward(x):
    """``y[n, c]`` = the mean of ``x[n, c]`` over (H, W).

    Args:
        x: (N, C, H, W) float32/float64.
    Returns:
        y: (N, C).
    """
    return _C.global_avg_pool2d_forward(x)


def global_avg_pool2d_backward(grad_out, input_shape):
    """``dx[n, c, h, w] = grad_out[n, c] / (H W)``.

    Args:
        grad_out: (N, C) float32/float64.
        input_shape: (N, C, H, W).
    Returns:
        grad_input: (N, C, H, W).
    """
    return _C.global_avg_pool2d_backward(grad_out, input_shape)
