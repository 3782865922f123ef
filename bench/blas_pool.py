"""fastnn next to numpy's OpenBLAS in one process (issue 8; python/fastnn/_blas_pool.py).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE -u OPENBLAS_THREAD_TIMEOUT \
        python bench/blas_pool.py [--rounds N]

After a threaded numpy product, OpenBLAS's workers busy-wait ~0.1 s for more work and take cores
from whatever runs next. Each fastnn workload is timed alone (numpy's workers asleep), right after
the numpy 1024^2 float32 product computed on one thread (the same work before it, but no worker
left spinning: the control), right after it on numpy's threads with fastnn's guard switched off
(the bug), and the same with the guard on. Then the numpy product itself: after its workers fell
asleep, right after another numpy product, and right after fastnn. Medians of interleaved rounds,
in ms; a timing, never a test. In brackets: the CPU time numpy's workers took meanwhile, which
shows the spinning even on a loaded machine. Not run by compare.py: bench/conftest.py sets
OPENBLAS_THREAD_TIMEOUT=4, which hides the effect.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))  # the work tree's fastnn unless installed
import numpy as np  # noqa: E402

# OpenBLAS starts its workers when numpy loads it; fastnn's OpenMP threads come later.
BLAS_WORKERS = [t for t in os.listdir("/proc/self/task") if int(t) != os.getpid()] \
    if os.path.isdir("/proc/self/task") else []
import fastnn  # noqa: E402
from fastnn import _blas_pool  # noqa: E402

ASLEEP = 0.35  # s: longer than OpenBLAS's default spin (2**28 TSC ticks, ~0.1 s at 2.6 GHz)


def numpy_threads():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return ", ".join(f"{os.path.basename(p['filepath'])} {p.get('architecture')} threads={p['num_threads']}"
                     for p in threadpool_info() if p["user_api"] == "blas")


def blas_thread_calls():
    """(openblas_get_num_threads, openblas_set_num_threads) of numpy's OpenBLAS, whatever their
    symbol suffix, or None."""
    for pool in _blas_pool.quiet._pools if _blas_pool.quiet.pools() else []:
        if "numpy" in pool.path:
            for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"),
                                   ("openblas", "")):
                get, set_ = f"{prefix}_get_num_threads{suffix}", f"{prefix}_set_num_threads{suffix}"
                if hasattr(pool.lib, get) and hasattr(pool.lib, set_):
                    return getattr(pool.lib, get), getattr(pool.lib, set_)
    return None


def worker_cpu():
    """Seconds the numpy OpenBLAS workers have run so far (load-independent: what they took from fastnn)."""
    total = 0
    for t in BLAS_WORKERS:
        try:
            with open(f"/proc/self/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total * 1e-9


def timed(fn, spin=None):
    c, t = worker_cpu(), time.perf_counter()
    fn()
    t = time.perf_counter() - t
    if spin is not None:
        spin.append(worker_cpu() - c)
    return t


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for var in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"warning: {var}={os.environ[var]} is set; unset it to see what users see", file=sys.stderr)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((1024, 1024), dtype=np.float32)
    C = np.empty_like(A)

    def numpy_product():
        np.matmul(A, A, out=C)

    thread_calls = blas_thread_calls()

    def numpy_product_1t():  # the same work just before, without a spinning worker (the control)
        get, set_ = thread_calls
        n = get()
        set_(1)
        numpy_product()
        set_(n)

    X = rng.random((12000, 784), dtype=np.float32)  # Fashion-MNIST-sized rows
    y = rng.integers(0, 10, 12000)
    model = fastnn.nn.Sequential(fastnn.nn.Linear(784, 256), fastnn.nn.ReLU(), fastnn.nn.Linear(256, 128),
                                 fastnn.nn.ReLU(), fastnn.nn.Linear(128, 10))
    opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
    a = rng.standard_normal((512, 512), dtype=np.float32)
    out = np.empty_like(a)
    workloads = {
        "fit, 1 epoch, 12k x 784, MLP 784-256-128-10, batch 128":
            lambda: fastnn.fit(model, X, y, optimizer=opt, epochs=1, batch_size=128, verbose=0, seed=0),
        "predict 12k x 784": lambda: fastnn.predict(model, X),
        "functional.matmul 512^2": lambda: fastnn.functional.matmul(a, a, out=out),
    }
    timeouts_before = [p.timeout.value for p in _blas_pool.quiet._pools] if _blas_pool.quiet.pools() else []
    threads_before = numpy_threads()
    print(f"fastnn {fastnn.__version__}, {fastnn.get_num_threads()} threads; numpy {np.__version__}: {threads_before}")
    print(f"guard quiets: {', '.join(os.path.basename(p) for p in _blas_pool.quiet.pools()) or 'nothing'}")
    for fn in [numpy_product, *workloads.values()]:  # warm up
        fn()

    conditions = ("alone", "after 1-thread numpy", "after numpy, no guard", "after numpy, guard")
    if thread_calls is None:
        conditions = tuple(c for c in conditions if c != "after 1-thread numpy")
    times = {(w, c): [] for w in workloads for c in conditions}
    spins = {(w, c): [] for w in workloads for c in conditions}
    numpy_times = {c: [] for c in ("asleep", "after numpy", "after fastnn, no guard", "after fastnn, guard")}
    rounds = {"functional.matmul 512^2": args.rounds * 4}
    for r in range(max(rounds.get(w, args.rounds) for w in workloads)):
        for w, fn in workloads.items():
            if r >= rounds.get(w, args.rounds):
                continue
            for c in conditions:
                _blas_pool.enabled = c != "after numpy, no guard"
                if c == "alone":
                    time.sleep(ASLEEP)
                elif c == "after 1-thread numpy":
                    numpy_product_1t()
                else:
                    numpy_product()
                times[w, c].append(timed(fn, spins[w, c]))
                if w.startswith("functional") and c.startswith("after numpy"):  # numpy right after fastnn
                    numpy_times["after fastnn, " + ("guard" if _blas_pool.enabled else "no guard")].append(
                        timed(numpy_product))
        _blas_pool.enabled = True
        time.sleep(ASLEEP)
        numpy_times["asleep"].append(timed(numpy_product))
        numpy_times["after numpy"].append(timed(numpy_product))

    ms = lambda ts: f"{statistics.median(ts) * 1e3:.3f}"  # noqa: E731
    print("\n| workload (median ms; in brackets the numpy workers' CPU ms during it) | " + " | ".join(conditions)
          + " | slowdown without / with guard |")
    print("|---" * (len(conditions) + 2) + "|")
    for w in workloads:
        med = {c: statistics.median(times[w, c]) for c in conditions}
        base = med["alone"]
        print(f"| {w} | " + " | ".join(f"{ms(times[w, c])} [{ms(spins[w, c])}]" for c in conditions)
              + f" | {med['after numpy, no guard'] / base:.2f}x / {med['after numpy, guard'] / base:.2f}x |")
    print("\n| numpy 1024^2 float32 product (median ms) | " + " | ".join(numpy_times) + " |")
    print("|---" * (len(numpy_times) + 1) + "|")
    print("| | " + " | ".join(ms(t) for t in numpy_times.values()) + " |")

    n = 100000
    t = time.perf_counter()
    for _ in range(n):
        with _blas_pool.quiet:
            pass
    print(f"\nguard enter+exit: {(time.perf_counter() - t) / n * 1e6:.2f} us")
    after = [p.timeout.value for p in _blas_pool.quiet._pools]
    print(f"OpenBLAS thread_timeout before / after: {timeouts_before} / {after}; "
          f"numpy threads after: {numpy_threads()}" + ("" if numpy_threads() == threads_before else "  CHANGED"))


if __name__ == "__main__":
    main()
