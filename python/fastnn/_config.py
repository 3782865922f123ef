"""Thread count and build configuration."""

import os
import sys

from . import _gemm_backend
from ._loader import load_core
from ._validate import check_binding_arguments as _check_binding_arguments

_C = load_core()
_check_binding_arguments(_C)  # typed scalars: named errors instead of pybind11's argument dump
_gemm_backend._reason = _gemm_backend.load(_C)


def gemm_backend() -> dict:
    """The library behind every matrix product: ``{'name': 'openblas' | 'eigen', 'core': the CPU
    kernel OpenBLAS chose (or Eigen's SIMD level), 'config', 'path'}``, with ``'reason'`` when
    Eigen serves."""
    return _gemm_backend.describe(_C)


def use_gemm_backend(name: str) -> None:
    """Chooses the library behind every matrix product for this process: ``'openblas'`` (the
    default when the scipy-openblas32 wheel is installed) or ``'eigen'``. Both give results that do
    not depend on the thread count; they differ from each other in the last bits."""
    if not isinstance(name, str):
        raise TypeError(f"use_gemm_backend: name must be a str, got {type(name).__name__}")
    _C._use_gemm_backend(name)
    if name == "eigen":
        _gemm_backend._reason = "chosen with use_gemm_backend('eigen')"


def set_num_threads(n: int) -> None:
    """Set the number of threads every fastnn kernel uses.

    The count is fastnn's own: it holds in every Python thread and is not changed by
    ``torch.set_num_threads`` or by OpenMP calls made elsewhere. The default is
    ``OMP_NUM_THREADS`` (or the number of cores) at import.
    """
    from ._validate import is_int

    if not is_int(n):  # np.int64 as well as int
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    if n >= 2**31:
        raise ValueError(f"set_num_threads: n must be < 2**31, got {n}")
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    """Number of threads fastnn kernels use."""
    return _C.get_num_threads()


def empty_cache() -> int:
    """Frees the recycled output buffers (fastnn keeps up to 256 MB of freed kernel outputs for
    reuse, as PyTorch's caching allocator does); returns the number of bytes released."""
    return _C.empty_cache()


def build_info() -> dict:
    """Build flags of the loaded core: version, ISA, compiler, flags, SIMD, Eigen, OpenMP."""
    info = dict(_C._build_info())
    info["module"] = _C.__name__
    info["num_threads"] = get_num_threads()
    return info


def _gemm_summary() -> str:
    g = gemm_backend()
    if g["name"] == "openblas":
        return f"OpenBLAS, {g['core']} kernel ({g['config']})"
    return f"Eigen {g['core']} ({g['reason']})"


def show_config(file=None) -> None:
    """Print the build configuration (flags, SIMD level, threads) and the runtime versions."""
    import numpy as np

    info = build_info()
    out = file or sys.stdout
    rows = [
        ("fastnn", info["version"]),
        ("module", info["module"]),
        ("isa", info["isa"]),
        ("simd", f"{info['simd']} ({info['vector_bits']}-bit vectors)"),
        ("compiler", info["compiler"]),
        ("build type", info["build_type"]),
        ("cxx flags", " ".join(info["cxx_flags"].split())),
        ("eigen", info["eigen"]),
        ("openmp", info["openmp"] or "no (single-threaded build)"),
        ("gemm", _gemm_summary()),
        ("threads", info["num_threads"]),
        ("GOMP_SPINCOUNT", os.environ.get("GOMP_SPINCOUNT", "(libgomp default)")),
        ("python", sys.version.split()[0]),
        ("numpy", np.__version__),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}", file=out)
