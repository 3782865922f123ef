"""`python -m fastnn`: print the build configuration and time fastnn's GEMM against NumPy's BLAS."""

import argparse
import sys
import time

import numpy as np

import fastnn
from fastnn import functional as F


def _best_seconds(fn, repeats):
    fn()  # warm-up: first touch of the output, thread pool start
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def gemm_report(size=1024, repeats=10, file=None):
    """Median GFLOP/s of a float32 size^3 matmul, fastnn vs numpy, same arrays, same run."""
    out = file or sys.stdout
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), dtype=np.float32)
    flop = 2.0 * size**3
    t_fastnn = _best_seconds(lambda: F.matmul(a, b, out=c), repeats)
    t_numpy = _best_seconds(lambda: np.matmul(a, b, out=c), repeats)
    err = float(np.max(np.abs(F.matmul(a, b) - a @ b)))
    print(f"\nfloat32 GEMM {size}x{size}x{size}, {fastnn.get_num_threads()} threads (median of {repeats}):", file=out)
    print(f"  fastnn {flop / t_fastnn / 1e9:7.1f} GFLOP/s  ({t_fastnn * 1e3:.2f} ms)", file=out)
    print(f"  numpy  {flop / t_numpy / 1e9:7.1f} GFLOP/s  ({t_numpy * 1e3:.2f} ms)", file=out)
    print(f"  ratio  {t_numpy / t_fastnn:.2f}x numpy   max |diff| {err:.2e}", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    info = sub.add_parser("info", help="build configuration and a GEMM timing (the default)")
    info.add_argument("--size", type=int, default=1024, help="GEMM size (default 1024)")
    info.add_argument("--threads", type=int, default=None, help="fastnn threads (default: all)")
    args = parser.parse_args(argv)
    if args.command in (None, "info"):
        if getattr(args, "threads", None):
            fastnn.set_num_threads(args.threads)
        fastnn.show_config()
        gemm_report(size=getattr(args, "size", 1024))
    return 0


if __name__ == "__main__":
    sys.exit(main())
