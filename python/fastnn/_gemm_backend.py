"""The GEMM backend: OpenBLAS from the ``scipy-openblas32`` wheel, loaded into fastnn's core at
import, or Eigen's kernel.

OpenBLAS chooses its micro-kernel for the CPU it runs on; fastnn calls it on one thread per tile
of a product from its own OpenMP threads (``cpp/include/fastnn/kernels/gemm.h``). Eigen's kernel
serves when the wheel is missing, fails to load, or ``FASTNN_GEMM=eigen`` is set.
``FASTNN_GEMM=openblas`` makes a failure to load an ImportError instead.
"""

import os

import numpy  # noqa: F401  (loaded first: its own BLAS must not see the one-thread setting below)

_CHOICES = ("auto", "openblas", "eigen")
_reason = ""  # why Eigen serves, set by load() and use_gemm_backend
_forced_core = None  # OPENBLAS_CORETYPE when the library loaded: it chose that kernel, not the CPU's


def _library_path():
    """Path of libscipy_openblas in the installed wheel, or None when the wheel is absent."""
    try:
        import scipy_openblas32
    except ImportError:
        return None
    lib_dir = scipy_openblas32.get_lib_dir()
    for name in sorted(os.listdir(lib_dir)):
        if name.startswith("libscipy_openblas") and (".so" in name or name.endswith(".dylib")):
            return os.path.join(lib_dir, name)
    return None


def load(core):
    """Loads the backend chosen by FASTNN_GEMM into `core` (fastnn._C); returns why OpenBLAS is
    not used, or '' when it is."""
    choice = os.environ.get("FASTNN_GEMM", "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ImportError(f"FASTNN_GEMM must be one of {', '.join(_CHOICES)}, got {choice!r}")
    if choice == "eigen":
        return "FASTNN_GEMM=eigen"
    path = _library_path()
    if path is None:
        error = "the scipy-openblas32 package is not installed"
    else:
        # The library starts its thread pool when it loads unless told one thread: fastnn runs it
        # single-threaded anyway, and idle pool threads would spin against OpenMP's.
        global _forced_core
        _forced_core = os.environ.get("OPENBLAS_CORETYPE") or None
        saved = os.environ.get("OPENBLAS_NUM_THREADS")
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        try:
            error = core._load_blas(path)
        finally:
            if saved is None:
                del os.environ["OPENBLAS_NUM_THREADS"]
            else:
                os.environ["OPENBLAS_NUM_THREADS"] = saved
    if error and choice == "openblas":
        raise ImportError(f"FASTNN_GEMM=openblas, but OpenBLAS could not be loaded: {error}")
    return error


def describe(core):
    """The active backend: {'name', 'core', 'config', 'path'}, plus 'reason' when Eigen serves."""
    info = dict(core._gemm_backend())
    info.pop("loaded", None)
    if info["name"] == "eigen":
        info["reason"] = _reason or "chosen with use_gemm_backend('eigen')"
    elif _forced_core:
        info["core"] += f" (forced by OPENBLAS_CORETYPE={_forced_core})"
    return info

