"""maxout: wrappers of the C++ kernels (reference/maxout.py is the specification)."""

from .._config import _C


def maxout_forward(x, pieces):
    """Maxout ``y[n, c] = max_p x[n, c * pieces + p]`` over groups of ``pieces`` adjacent features.

    The Linear layer producing the C * pieces values is separate (max(w1ᵀx + b1, ..., wkᵀx + bk)).

    Args:
        x: (N, C * pieces) float32/float64.
        pieces: int >= 1 dividing x.shape[1].
    Returns:
        (y, argmax): y (N, C) of x's dtype; argmax (N, C) int64, the index within its group of the
        first maximum (a NaN counts as the maximum).
    """
    return _C.maxout_forward(x, pieces)


def maxout_backward(grad_out, argmax, pieces):
    """Gradient of maxout: ``grad_in[n, c * pieces + argmax[n, c]] = grad_out[n, c]``, 0 elsewhere.

    Args:
        grad_out: (N, C) float32/float64.
        argmax: (N, C) int64 from :func:`maxout_forward`, values in [0, pieces).
        pieces: int >= 1.
    Returns:
        grad_in (N, C * pieces), dtype of grad_out.
    """
    return _C.maxout_backward(grad_out, argmax, pieces)
