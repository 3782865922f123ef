"""gemm: wrappers of the C++ kernels (reference/gemm.py is the specification)."""

from .._config import _C
from ._common import _guard


def matmul(a, b, out=None, accumulate=False):
    """Matrix product ``a @ b`` (``out += a @ b`` with ``accumulate=True``).

    Args:
        a: (M, K) float32/float64; C order, Fortran order, transposed and column-sliced views are
            read in place.
        b: (K, N), same dtype.
        out: optional (M, N) array to write into (no allocation): C-contiguous, or a column
            slice of a wider C-order array (rows of unit stride), written in place.
        accumulate: add the product into ``out`` (which must then be given), as the layers'
            gradients accumulate; the sum is formed inside the GEMM, without a second pass.
    Returns:
        (M, N) array.
    """
    with _guard(a, b):
        return _C.matmul(a, b, out, accumulate)


def bmm(a, b, out=None):
    """Batched matrix product ``c[i] = a[i] @ b[i]``.

    Args:
        a: (B, M, K) float32/float64.
        b: (B, K, N), same dtype.
        out: optional C-contiguous (B, M, N) array to write into.
    Returns:
        (B, M, N) array.
    """
    with _guard(a, b):
        return _C.bmm(a, b, out)
