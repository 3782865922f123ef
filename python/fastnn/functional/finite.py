"""finite: wrappers of the C++ kernels (reference/finite.py is the specification)."""

from .._config import _C


def first_nonfinite(x):
    """Flat (C-order) index of the first NaN or infinity in x, or -1 when all values are finite.

    The check fit() runs on its data: both threads scan, vectorized (NumPy's equivalent,
    ``np.isfinite(x).all()``, runs on one thread and allocates a boolean array).

    Args:
        x: float32 or float64 array of any shape (C-contiguous is fastest; others are copied).
    Returns:
        int.
    """
    return _C.first_nonfinite(x)
