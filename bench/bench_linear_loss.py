"""One evaluation of the lbfgs workload's objective (kernels/linear_loss.h: softmax regression
784 -> 10 on 60000 samples, loss and gradient in one pass over X) against the floors: the FMA
peak (2 x n x in x out multiply-adds) and a plain streaming read of X at the same thread count
(fastnn's finiteness scan, one vectorized sum per block: what reading X costs at best).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/bench_linear_loss.py
    ... --n 60000 --in 784 --out 10 --dtype float32 --threads 2 --repeats 20

Random data of the workload's shape (the timing does not depend on the values). Prints medians.
"""

import argparse
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--in", dest="n_in", type=int, default=784)
    ap.add_argument("--out", type=int, default=10)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import numpy as np

    import fastnn
    from fastnn import functional as F

    fastnn.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    X = rng.random((a.n, a.n_in), dtype=np.float32).astype(a.dtype)
    y = rng.integers(0, a.out, a.n)
    W = (rng.standard_normal((a.out, a.n_in)) * 0.01).astype(a.dtype)
    b = np.zeros(a.out, a.dtype)
    fns = {"evaluation": lambda: F.linear_loss_forward_backward(X, y, W, b),
           "streaming read of X": lambda: fastnn._C.first_nonfinite(X)}
    times = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(a.repeats):  # alternating
        for k, f in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    med = {k: float(np.median(t)) for k, t in times.items()}
    med_cpu = {k: float(np.median(t)) for k, t in cpu.items()}
    flops = 2 * 2 * a.n * a.n_in * a.out
    from fastnn.info import fma_peak_gflops

    peak = fma_peak_gflops(a.dtype, a.threads)
    gb = X.nbytes / 1e9
    ev, rd = med["evaluation"], med["streaming read of X"]
    print(f"{a.n}x{a.n_in} -> {a.out} {a.dtype}, {a.threads} threads, {a.repeats} paired rounds (median); "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"  evaluation           {ev * 1e3:8.2f} ms  {flops / ev / 1e9:6.1f} GFLOP/s ({100 * flops / ev / 1e9 / peak:.0f}% "
          f"of {peak:.0f}, the FMA peak measured now; at it {flops / peak / 1e6:.2f} ms)  {gb / ev:5.1f} GB/s of X")
    print(f"  streaming read of X  {rd * 1e3:8.2f} ms  {gb / rd:5.1f} GB/s  (evaluation / read {ev / rd:.2f}x)")
    print(f"  CPU time (all threads): evaluation {med_cpu['evaluation'] * 1e3:.2f} ms, read "
          f"{med_cpu['streaming read of X'] * 1e3:.2f} ms (a loaded machine inflates wall times, less so these)")


if __name__ == "__main__":
    main()
