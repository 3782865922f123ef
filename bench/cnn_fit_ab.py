"""fit() of BENCH.md's CNN (fastnn.models.simple_cnn, Adam 1e-3, batch 128) in ms per batch of
process CPU time at 1 thread, optionally paired against another tree's build.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/cnn_fit_ab.py
    ... bench/cnn_fit_ab.py --base /tmp/main-python --rounds 8   # paired A/B against another python/

Each measurement is one process: a fit of --warm batches (first-epoch costs: allocation, page
faults), then --batches batches timed by one fit call (CPU time / batches). With --base the
rounds alternate ABBA (base then new, then new then base) and the median of the per-round ratios
base/new (> 1: new faster) is printed with their range and the load average. On a shared machine
CPU time at 1 thread is what can be compared; wall time is printed for reference only.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batches", type=int, default=60)
ap.add_argument("--warm", type=int, default=10)
ap.add_argument("--base", help="another tree's python/ directory: paired A/B rounds against it")
ap.add_argument("--rounds", type=int, default=6)
ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
args = ap.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)


def worker():
    import numpy as np

    import fastnn
    from fastnn.models import simple_cnn

    fastnn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    b = 128
    X = rng.standard_normal(((args.warm + args.batches) * b, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, len(X))
    fastnn.manual_seed(0)
    model = simple_cnn()
    fastnn.fit(model, X[: args.warm * b], y[: args.warm * b], optimizer="adam", lr=1e-3, batch_size=b, verbose=0,
               seed=0)
    c0, t0 = time.process_time(), time.perf_counter()
    fastnn.fit(model, X[args.warm * b:], y[args.warm * b:], optimizer="adam", lr=1e-3, batch_size=b, verbose=0,
               seed=0)
    return {"cpu": (time.process_time() - c0) / args.batches, "wall": (time.perf_counter() - t0) / args.batches}


if args.json:
    print(json.dumps(worker()))
    sys.exit(0)
if not args.base:
    r = worker()
    print(f"threads {args.threads}, load {os.getloadavg()[0]:.1f}: cpu {1e3 * r['cpu']:.2f} ms/batch, "
          f"wall {1e3 * r['wall']:.2f} ms/batch")
    sys.exit(0)

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
cmd = [sys.executable, os.path.abspath(__file__), "--json", "--threads", str(args.threads), "--batches",
       str(args.batches), "--warm", str(args.warm)]


def run(path):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
    return json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)


loads, ratios, base_t, new_t = [], [], [], []
for r in range(args.rounds):
    loads.append(os.getloadavg()[0])
    order = (("base", args.base), ("new", here)) if r % 2 == 0 else (("new", here), ("base", args.base))
    got = {name: run(path)["cpu"] for name, path in order}
    ratios.append(got["base"] / got["new"]), base_t.append(got["base"]), new_t.append(got["new"])
print(f"cnn fit, threads {args.threads}, {args.rounds} ABBA rounds of {args.batches} batches, CPU time, "
      f"load {min(loads):.1f}-{max(loads):.1f}")
print(f"base {1e3 * statistics.median(base_t):.2f} ms/batch, new {1e3 * statistics.median(new_t):.2f} ms/batch, "
      f"base/new {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")
