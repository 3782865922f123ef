"""softmax: wrappers of the C++ kernels (reference/softmax.py is the specification)."""

from .._config import _C


def softmax_forward(x):
    """Softmax over the last axis ``y = exp(x - max(x)) / sum(exp(x - max(x)))``.

    Args:
        x: (..., K) float32/float64, ndim >= 1.
    Returns:
        y, same shape and dtype; every row sums to 1.
    """
    return _C.softmax_forward(x)


def softmax_backward(grad_out, y):
    """Gradient of softmax from its output: ``grad_in = y * (g - sum(g * y, last axis))``.

    Args:
        grad_out: (..., K) float32/float64.
        y: softmax output, same shape and dtype.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.softmax_backward(grad_out, y)


def log_softmax_forward(x):
    """Log-softmax over the last axis ``y = x - max(x) - log(sum(exp(x - max(x))))``.

    Args:
        x: (..., K) float32/float64, ndim >= 1.
    Returns:
        y, same shape and dtype.
    """
    return _C.log_softmax_forward(x)


def log_softmax_backward(grad_out, y):
    """Gradient of log-softmax from its output: ``grad_in = g - exp(y) * sum(g, last axis)``.

    Args:
        grad_out: (..., K) float32/float64.
        y: log_softmax output, same shape and dtype.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.log_softmax_backward(grad_out, y)
