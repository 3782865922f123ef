"""Winograd F(2x2, 3x3) convolutions at the cnn's and DenseNet's 3x3 shapes, paired A/B between two
builds of fastnn: each round runs one process per build, alternated, and the table gives per row the
median over rounds of CPU (process) time per call and the ratio A/B of each round's pair.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python:. python bench/bench_winograd.py \\
        --a /work/main/python --b python --rounds 5 --threads 1

Rows: conv2d_forward, conv2d_backward without the input gradient (dW + db), the whole backward, at
(N, C, H, W) -> O, 3x3, padding 1. --fit: instead, CPU ms per batch of fastnn.fit (Adam, batch 128,
random 28x28 images) of models.simple_cnn() (30 batches x 2 epochs) and of the DenseNet-BC k=12
(6, 6, 6) (3 batches x 1 epoch). Also usable alone (--child) to time one build.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = {
    "cnn conv2 128x32x14x14->64": ((128, 32, 14, 14), 64),
    "densenet b1 3x3 128x48x28x28->12": ((128, 48, 28, 28), 12),
    "densenet b2 3x3 128x48x14x14->12": ((128, 48, 14, 14), 12),
    "densenet b3 3x3 128x48x7x7->12": ((128, 48, 7, 7), 12),
}


def fit_child(only):
    import numpy as np

    import fastnn

    rng = np.random.default_rng(0)
    out = {}
    for name, batches, epochs in (("cnn", 30, 2), ("densenet", 3, 1)):
        if only and only not in name:
            continue
        X = rng.standard_normal((128 * batches, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, len(X))
        fastnn.manual_seed(0)
        model = fastnn.models.densenet(12, (6, 6, 6)) if name == "densenet" else fastnn.models.simple_cnn()
        opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
        fastnn.fit(model, X[:256], y[:256], optimizer=opt, epochs=1, batch_size=128, verbose=0)  # warm-up
        c = time.process_time()
        fastnn.fit(model, X, y, optimizer=opt, epochs=epochs, batch_size=128, verbose=0)
        out[f"{name} fit ms/batch"] = (time.process_time() - c) / (batches * epochs) * 1e3
    print(json.dumps(out))


def child(threads, reps, only, fit=False):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import numpy as np

    import fastnn
    from fastnn import functional as F

    fastnn.set_num_threads(threads)
    if fit:
        return fit_child(only)
    rng = np.random.default_rng(0)
    out = {}
    for name, (shape, O) in SHAPES.items():
        if only and only not in name:
            continue
        x = rng.standard_normal(shape, dtype=np.float32)
        w = (rng.standard_normal((O, shape[1], 3, 3)) / np.sqrt(9 * shape[1])).astype(np.float32)
        g = rng.standard_normal((shape[0], O, shape[2], shape[3]), dtype=np.float32)
        calls = {
            "fwd": lambda: F.conv2d_forward(x, w, None, padding=1),
            "dW": lambda: F.conv2d_backward(g, x, w, padding=1, need_input_grad=False),
            "bwd": lambda: F.conv2d_backward(g, x, w, padding=1),
        }
        for part, fn in calls.items():
            fn()
            best = []
            for _ in range(3):
                c = time.process_time()
                for _ in range(reps):
                    fn()
                best.append((time.process_time() - c) / reps * 1e3)
            out[f"{name} {part}"] = min(best)
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", help="PYTHONPATH entry of build A (e.g. the main worktree's python/)")
    p.add_argument("--b", default="python", help="PYTHONPATH entry of build B")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", default="", help="only the shapes whose name contains this")
    p.add_argument("--fit", action="store_true", help="time fit of the cnn and the DenseNet instead")
    p.add_argument("--child", action="store_true")
    args = p.parse_args()
    if args.child:
        return child(args.threads, args.reps, args.only, args.fit)
    builds = {"A": args.a, "B": args.b} if args.a else {"B": args.b}
    runs = {k: [] for k in builds}
    for _ in range(args.rounds):
        for k, path in builds.items():
            env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
            cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--reps", str(args.reps),
                   "--only", args.only] + (["--fit"] if args.fit else [])
            runs[k].append(json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout))
    print(f"load {os.getloadavg()[0]:.2f}; {args.rounds} rounds, {args.threads} threads, CPU ms per call (median)")
    for row in runs["B"][0]:
        b = statistics.median(r[row] for r in runs["B"])
        if "A" in runs:
            a = statistics.median(r[row] for r in runs["A"])
            ratio = statistics.median(ra[row] / rb[row] for ra, rb in zip(runs["A"], runs["B"]))
            print(f"{row:44s} A {a:8.2f}  B {b:8.2f}  A/B {ratio:5.2f}")
        else:
            print(f"{row:44s} {b:8.2f}")


if __name__ == "__main__":
    main()
