"""16-trial random search: wall time on the local process pool (2 workers x 1 thread) against the
same trials run one after another in this process (1 thread, and 2 threads), paired and alternating.

    PYTHONPATH=python:. python bench/bench_tune.py [--trials 16] [--epochs 3] [--repeats 2]

Each trial builds an MLP 784-h-10 (h from the space), trains it with Adam for --epochs on the
Fashion-MNIST training images (the bundled 5k subset when the full set is missing) and scores its
validation accuracy. The pool's time includes starting its workers. The scores of the two runs
must agree (same seeds): the benchmark checks it.

CPU seconds (this process and its finished workers) are printed beside the wall times: on a
machine with Linux's autogroup scheduling (sched_autogroup_enabled=1) all processes of one
session share one fair slice, so while other sessions keep the cores busy the pool's two workers
get together what one process would, and only the CPU seconds say what the pool costs.
"""

import argparse
import os
import resource
import time

import numpy as np

import fastnn
from fastnn import nn, tune


def build(config):
    return nn.Sequential(nn.Linear(784, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], 10))


SPACE = {"lr": tune.loguniform(1e-4, 3e-2), "hidden": tune.choice([64, 128, 256]), "batch_size": tune.choice([32, 64])}


def _cpu_seconds():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    (X, y), _ = fastnn.datasets.fashion_mnist()
    print(f"data: {fastnn.datasets.fashion_mnist_source()} ({len(X)} training images); {os.cpu_count()} cores")
    times = {"sequential-1": [], "sequential-2": [], "pool-2x1": []}
    cpu = {k: [] for k in times}
    scores = {}
    kwargs = dict(n_trials=args.trials, epochs=args.epochs, seed=0)
    for r in range(args.repeats):
        for name in (("sequential-1", "pool-2x1", "sequential-2") if r % 2 == 0 else
                     ("sequential-2", "pool-2x1", "sequential-1")):
            start = time.perf_counter()
            cpu0 = _cpu_seconds()
            if name.startswith("sequential"):
                fastnn.set_num_threads(int(name[-1]))
                result = tune.random_search(build, SPACE, X, y, executor="sequential", **kwargs)
            else:
                pool = tune.LocalPool(n_workers=2, threads_per_worker=1)
                try:
                    result = tune.random_search(build, SPACE, X, y, executor=pool, **kwargs)
                finally:
                    pool.shutdown()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(_cpu_seconds() - cpu0)
            scores[name] = [t["score"] for t in result.trials]
    assert scores["pool-2x1"] == scores["sequential-1"] == scores["sequential-2"], "same seeds must give the same scores"
    print(result.summary())
    best = {k: min(v) for k, v in times.items()}
    for name, t in best.items():
        print(f"{name:>13}: best {t:6.2f} s of {['%.2f' % x for x in times[name]]}, CPU "
              f"{['%.2f' % x for x in cpu[name]]} s")
    print(f"pool speed-up: {best['sequential-1'] / best['pool-2x1']:.2f}x vs sequential 1 thread, "
          f"{best['sequential-2'] / best['pool-2x1']:.2f}x vs sequential 2 threads (target >= 1.8x)")


if __name__ == "__main__":
    main()
