"""Native vs portable build on this CPU: float32 GEMM GFLOP/s and seconds per training epoch.

The portable build (what `FASTNN_NATIVE=OFF pip install .` and the dispatch wheel install: one
of _C_base/_C_avx2/_C_avx512 picked at import) must run at >= 0.9x the -march=native build's
speed. Each build runs in its own process, alternated round by round so that drift on a shared
machine hits both alike. The figures are the best over the rounds (GEMM: median of 20 calls;
epochs: the fastest of 3 after a warm-up): on a shared 2-core machine a process on the other
core makes a 2-thread epoch 10-20x slower at random, which no median over a few rounds removes.

    tools/dev-build && tools/portable-check --build-only
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/portable.py [--rounds 3]
        [--native python] [--portable build/portable/site]
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One process: load the package found on PYTHONPATH, time GEMMs and epochs, print JSON.
CHILD = r"""
import json, time
import numpy as np
import fastnn
from fastnn import optim
from fastnn.__main__ import build_model
from fastnn._config import _C

import os
threads = int(os.environ["BENCH_THREADS"])
fastnn.set_num_threads(threads)
out = {"module": _C.__name__, "file": _C.__file__, "isa": fastnn.build_info()["isa"]}

def median_seconds(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return float(np.median(ts))

rng = np.random.default_rng(0)
for m, k, n in [(1024, 1024, 1024), (128, 784, 256), (6272, 288, 64)]:
    a = rng.standard_normal((m, k), dtype=np.float32); b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    s = median_seconds(lambda: fastnn.functional.matmul(a, b, out=c), 20)
    out[f"gemm {m}x{k}x{n} {threads}t GFLOP/s"] = 2.0 * m * k * n / s * 1e-9

(X, y), _ = fastnn.datasets.fashion_mnist()
out["images"] = len(X)
for name in ("mlp-s", "mlp-l"):
    fastnn.manual_seed(0)
    model = build_model(name)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    fastnn.fit(model, X, y, optimizer=opt, epochs=1, batch_size=128, verbose=0)  # warm-up
    h = fastnn.fit(model, X, y, optimizer=opt, epochs=3, batch_size=128, verbose=0)
    out[f"{name} epoch {threads}t s"] = float(min(h["seconds"]))
print(json.dumps(out))
"""


def run(pythonpath, threads):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(pythonpath), OMP_NUM_THREADS="2", BENCH_THREADS=str(threads))
    env.pop("FASTNN_ISA", None)
    res = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, cwd="/")
    if res.returncode:
        raise SystemExit(f"bench/portable.py: the build in {pythonpath} failed:\n{res.stderr}")
    return json.loads(res.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--native", default=os.path.join(ROOT, "python"), help="package root of the native build")
    parser.add_argument("--portable", default=os.path.join(ROOT, "build", "portable", "site"),
                        help="package root of the portable build (tools/portable-check --build-only)")
    args = parser.parse_args()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"warning: {var}={os.environ[var]} is set; it forces an OpenBLAS kernel (run under env -u {var})")
    builds = {"native": args.native, "portable": args.portable}
    results = {label: [] for label in builds}
    for _ in range(args.rounds):
        for label, path in builds.items():
            r = run(path, 1)
            r.update(run(path, 2))
            results[label].append(r)
    for label, rs in results.items():
        print(f"{label:8}  {rs[0]['module']} ({rs[0]['isa']}) from {os.path.dirname(rs[0]['file'])}")
    print(f"{results['native'][0]['images']} training images, 1 and 2 threads, best of {args.rounds} rounds")
    print(f"{'':31} {'native':>10} {'portable':>10} {'portable speed / native':>24}")
    for key in results["native"][0]:
        if not key.endswith(("GFLOP/s", "t s")):
            continue
        best = max if key.endswith("GFLOP/s") else min
        nat = best(r[key] for r in results["native"])
        por = best(r[key] for r in results["portable"])
        speed = por / nat if key.endswith("GFLOP/s") else nat / por
        print(f"{key:31} {nat:10.3f} {por:10.3f} {speed:24.2f}")


if __name__ == "__main__":
    main()
