"""numpy's OpenBLAS against fastnn's (the scipy-openblas32 wheel) called directly, one thread each:
cblas_sgemm / cblas_dgemm at the same shape, in one process, alternating. numpy bundles its own
OpenBLAS build (another version: numpy 2.4.6 ships 0.3.31, scipy-openblas32 0.3.34.481.3 is what
fastnn loads), so gemm_table.py's 1-thread "fastnn / numpy" ratios compare two OpenBLAS versions as
well as fastnn's calls: this tells the two apart (issue 8). CPU time per call, median of --rounds.

    PYTHONPATH=python python bench/openblas_versions.py                 # 1024^3 float32, A.B and A.B^T
    PYTHONPATH=python python bench/openblas_versions.py --n 256 --dtype float64

Run it on an idle machine: under load the rounds differ more than the libraries do.
"""

import argparse
import ctypes
import glob
import os
import statistics
import time

import numpy as np
import scipy_openblas32

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--n", type=int, default=1024, help="M = K = N (default 1024)")
ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
ap.add_argument("--rounds", type=int, default=7)
ap.add_argument("--reps", type=int, default=10, help="calls per round")
args = ap.parse_args()

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
dtype = np.dtype(args.dtype)
letter = "s" if dtype == np.float32 else "d"
scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double


def library(path, symbol, int_type, set_threads):
    """A gemm(trans_b) callable on the shared arrays from the library at path, set to one thread."""
    lib = ctypes.CDLL(path)
    getattr(lib, set_threads)(1)
    gemm = getattr(lib, symbol)
    gemm.restype = None

    def call(trans_b):
        i = int_type
        gemm(i(ROW_MAJOR), i(NO_TRANS), i(trans_b), i(n), i(n), i(n), scalar(1), ptr(A), i(n), ptr(B), i(n),
             scalar(0), ptr(C), i(n))
    return call


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


n = args.n
rng = np.random.default_rng(0)
A, B = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
C = np.empty((n, n), dtype)
numpy_libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "libscipy_openblas64*"))
libs = {
    f"fastnn's scipy-openblas32 {scipy_openblas32.__version__}":
        library(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so"), f"scipy_cblas_{letter}gemm",
                ctypes.c_int, "scipy_openblas_set_num_threads"),
}
if numpy_libs:
    libs[f"numpy {np.__version__}'s OpenBLAS"] = library(numpy_libs[0], f"scipy_cblas_{letter}gemm64_", ctypes.c_int64,
                                                       "scipy_openblas_set_num_threads64_")
else:
    print("numpy's bundled OpenBLAS not found (a numpy built against a system BLAS?): fastnn's alone")

times = {(name, t): [] for name in libs for t in (NO_TRANS, TRANS)}
for _ in range(args.rounds):
    for name, call in libs.items():
        for t in (NO_TRANS, TRANS):
            call(t)
            start = time.process_time()
            for _ in range(args.reps):
                call(t)
            times[(name, t)].append((time.process_time() - start) / args.reps)
print(f"{n}^3 {args.dtype}, 1 thread, CPU time, median of {args.rounds} rounds of {args.reps} calls")
for (name, t), ts in times.items():
    print(f"  {name:45s} {'A.B ' if t == NO_TRANS else 'A.Bt'} {2 * n ** 3 / statistics.median(ts) / 1e9:7.1f} GFLOP/s")
