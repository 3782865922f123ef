"""What the functional wrappers share: the C++ module and the guard of threaded products."""


from contextlib import nullcontext as _nullcontext

from .._blas_pool import quiet as _quiet_blas

# A product that runs on several threads does so with other OpenBLAS pools' idle workers asleep
# (_blas_pool.py); smaller products and the other kernels skip the ~1 us that costs.
_THREADED_MACS = 2 * 512 * 1024  # gemm.h gemm_threads: below this a product stays on one thread
_NO_GUARD = _nullcontext()


def _guard(a, b, axis=-1):
    """The BLAS guard for a product of ``a.size * b.shape[axis]`` multiply-adds if it is threaded;
    bad arguments get no guard and are reported by the kernel."""
    try:
        macs = a.size * b.shape[axis]
    except (AttributeError, IndexError, TypeError):
        return _NO_GUARD
    return _quiet_blas if macs >= _THREADED_MACS else _NO_GUARD
