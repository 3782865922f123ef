"""The C++ kernels, stateless, on NumPy arrays (float32 or float64; dtypes are never converted).

Each function has a NumPy reference of the same name in :mod:`fastnn.reference`, which is the
executable specification it is tested against. Inputs are read without copies when C-contiguous
(``matmul`` also maps strided and transposed views); other layouts are copied once.
Bad arguments raise ``TypeError`` (wrong type or dtype) or ``ValueError`` (shape, value), with the
op's name first: ``[matmul] inner dimensions differ: ...``.
"""

from ._config import _C

# --- gemm ---------------------------------------------------------------------------------------


def matmul(a, b, out=None):
    """Matrix product ``a @ b``.

    Args:
        a: (M, K) float32/float64; C order, Fortran order, transposed and column-sliced views are
            read in place.
        b: (K, N), same dtype.
        out: optional C-contiguous (M, N) array to write into (no allocation).
    Returns:
        (M, N) array.
    """
    return _C.matmul(a, b, out)


def bmm(a, b, out=None):
    """Batched matrix product ``c[i] = a[i] @ b[i]``.

    Args:
        a: (B, M, K) float32/float64.
        b: (B, K, N), same dtype.
        out: optional C-contiguous (B, M, N) array to write into.
    Returns:
        (B, M, N) array.
    """
    return _C.bmm(a, b, out)

# --- linear -------------------------------------------------------------------------------------

# --- activations --------------------------------------------------------------------------------

# --- loss ---------------------------------------------------------------------------------------

# --- batchnorm ----------------------------------------------------------------------------------

# --- dropout ------------------------------------------------------------------------------------

# --- end ----------------------------------------------------------------------------------------
