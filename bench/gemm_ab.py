"""Paired A/B timings of fastnn's GEMM settings in one process: the narrow kernel
(kernels/gemm_narrow.h) on vs off, or one tile size vs another, alternated sample by sample
(A B A B ...), so that a drift of the machine's load hits both alike. Prints, per product and
thread count, the median time of each and the median of the pairs' ratios old / new (above 1: the
new setting is faster) with its spread, and the load average.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/gemm_ab.py
    ... bench/gemm_ab.py --shapes 6272x288x32,3136x288x32 --dtype float64 --threads 1,2 --pairs 15
    ... bench/gemm_ab.py --tile-macs 268435456,536870912 --shapes 1024x1024x1024 --threads 2
    ... bench/gemm_ab.py --cnn                 # a CNN batch's convolutions and Linears (forward + backward)
    ... bench/gemm_ab.py --shapes 1024x784x64:NT,32x1024x784:TN --threads 1 --clock cpu

A shape MxKxN takes an optional :NN, :TN (A given as a transposed view: Aᵀ·B) or :NT (B: A·Bᵀ).
--clock cpu times in process CPU time (time.process_time: all threads' CPU, so meant for 1 thread
on a machine shared with other work), wall (default) in elapsed time.

With --tile-macs OLD,NEW the narrow kernel stays as it is and the pairs compare the two tile sizes
(gemm.h's kTileMacs). Settings go through _C._gemm_tuning, a private switch for this purpose.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

import fastnn
import fastnn.models
from fastnn import functional as F
from fastnn._config import _C

DEFAULT_SHAPES = "3136x288x32,6272x288x32,6272x288x16,12544x144x64,25088x36x16,2048x4000x32,25088x9x32,6272x288x64"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def sample(fn, min_seconds):
    """Seconds per call, over enough calls to last min_seconds."""
    fn()
    t0 = clock()
    fn()
    once = max(clock() - t0, 1e-7)
    inner = max(1, int(min_seconds / once))
    t0 = clock()
    for _ in range(inner):
        fn()
    return (clock() - t0) / inner


def operands(rng, shape, dtype):
    """(a, b, c, (m, k, n)) for "MxKxN[:NN|TN|NT]": a T operand is a transposed view of its transpose."""
    dims, _, variant = shape.partition(":")
    m, k, n = (int(v) for v in dims.lower().split("x"))
    variant = (variant or "NN").upper()
    if variant not in ("NN", "TN", "NT"):
        raise SystemExit(f"gemm_ab: variant of {shape!r} must be NN, TN or NT")
    a = rng.standard_normal((k, m)).astype(dtype).T if variant[0] == "T" else rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k)).astype(dtype).T if variant[1] == "T" else rng.standard_normal((k, n)).astype(dtype)
    return a, b, np.empty((m, n), dtype), (m, k, n)


def paired(fn, old, new, pairs, min_seconds):
    """(old seconds, new seconds, [old / new of each pair]) with the settings applied around fn."""
    olds, news = [], []
    for i in range(pairs):
        for which in ((old, new) if i % 2 == 0 else (new, old)):  # ABBA: no order favoured
            _C._gemm_tuning(**which)
            t = sample(fn, min_seconds)
            (olds if which is old else news).append(t)
    _C._gemm_tuning(**new)
    return statistics.median(olds), statistics.median(news), [o / n for o, n in zip(olds, news)]


def cnn_fn(dtype, batch=128):
    """A training step's forward and backward of the CNN (bench_cnn.py's model), without the optimizer."""
    model = fastnn.models.simple_cnn(dtype=np.dtype(dtype))
    x = np.random.default_rng(0).standard_normal((batch, 1, 28, 28)).astype(dtype)
    model.train()
    g = None

    def step():
        nonlocal g
        y = model(x)
        if g is None:
            g = np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)
        model.backward(g)

    return step


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="MxKxN[:NN|TN|NT],... (default NN: both row-major)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--pairs", type=int, default=11)
    p.add_argument("--min-seconds", type=float, default=0.05)
    p.add_argument("--tile-macs", help="OLD,NEW: compare two tile sizes instead of narrow off / on")
    p.add_argument("--cnn", action="store_true", help="time a CNN batch (forward + backward) instead of products")
    args = p.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    if args.tile_macs:
        o, n = (int(v) for v in args.tile_macs.split(","))
        old, new, what = {"tile_macs": o}, {"tile_macs": n}, f"tile_macs {o} (old) vs {n} (new)"
    else:
        old, new, what = {"narrow": False}, {"narrow": True}, "narrow kernel off (old) vs on (new)"
    before = _C._gemm_tuning()
    print(f"# {what}; {args.pairs} ABBA pairs of >= {args.min_seconds} s {args.clock} samples; load {os.getloadavg()}; "
          f"{fastnn.build_info()['isa']}, gemm {_C._gemm_backend()['name']} {_C._gemm_backend()['core']}")
    print("| product | dtype | threads | narrow fits | old ms | new ms | old / new median (min-max) |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    jobs = []
    if args.cnn:
        jobs.append(("cnn batch 128 fwd+bwd", None, cnn_fn(args.dtype)))
    else:
        for s in args.shapes.split(","):
            a, b, c, (m, k, n) = operands(rng, s, args.dtype)
            jobs.append((s, _C._narrow_gemm_fits(m, k, n, args.dtype), lambda a=a, b=b, c=c: F.matmul(a, b, out=c)))
    try:
        for threads in (int(t) for t in args.threads.split(",")):
            fastnn.set_num_threads(threads)
            for name, fits, fn in jobs:
                to, tn, r = paired(fn, old, new, args.pairs, args.min_seconds)
                print(f"| {name} | {args.dtype} | {threads} | {'' if fits is None else fits} | {to * 1e3:.3f} | "
                      f"{tn * 1e3:.3f} | {statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f}) |", flush=True)
    finally:
        _C._gemm_tuning(**before)
    print(f"# load after {os.getloadavg()}")


if __name__ == "__main__":
    main(sys.argv[1:])
