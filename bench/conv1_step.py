"""The cnn's first block (Conv2d 1 -> 32, 3x3 pad 1, BatchNorm2d, ReLU, MaxPool2d(2); --block 2: its
second, 32 -> 64 on 14x14) at batch 128 in training, timed as fit runs it: the conv alone (forward; backward without dx, as fit's first
layer) and the whole fused step (forward; backward without dx). Wall time (median) and, at 1
thread, process CPU time.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/conv1_step.py --threads 2
    ... bench/conv1_step.py --base /tmp/main-python --rounds 5   # paired A/B: another tree's python/
                                                                 # (base) vs this one, alternating processes

With --base each round runs base then this tree (then this tree then base in the next round, ABBA),
each in its own process, and prints the median of the per-round ratios base/new (> 1: new faster)
and their range, with the load average. The Python call copies each output into a new array (a
12.8 MB copy for the conv alone): the conv rows include it, the fused step's only the pooled 3.2 MB.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--repeats", type=int, default=30)
ap.add_argument("--dtype", default="float32")
ap.add_argument("--block", type=int, choices=(1, 2), default=1,
                help="the cnn's block: 1 (1 -> 32, 28x28) or 2 (32 -> 64, 14x14, Winograd)")
ap.add_argument("--base", help="another tree's python/ directory: paired A/B rounds against it")
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
args = ap.parse_args()


def worker():
    import numpy as np

    import fastnn
    from fastnn import nn

    fastnn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    c, o, hw = (1, 32, 28) if args.block == 1 else (32, 64, 14)
    x = rng.standard_normal((args.batch, c, hw, hw)).astype(args.dtype)
    fastnn.manual_seed(0)
    conv = nn.Conv2d(c, o, 3, padding=1, bias=False)  # as fastnn.models.simple_cnn
    step = nn.Sequential(nn.Conv2d(c, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
    if args.dtype == "float64":
        conv, step = conv.double(), step.double()
    res = {}
    for name, mod in (("conv", conv), ("step", step)):
        mod.train()
        layer = mod._layer
        out = mod(x)
        g = rng.standard_normal(out.shape).astype(args.dtype)

        def timed(fn):
            fn()
            wall, cpu = [], []
            for _ in range(args.repeats):
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                wall.append(time.perf_counter() - t0), cpu.append(time.process_time() - c0)
            return statistics.median(wall), statistics.median(cpu)

        fw, fc = timed(lambda: mod(x))
        bw, bc = timed(lambda: (mod(x), layer.backward(g, False)))
        res[f"{name} fwd"] = fw, fc
        res[f"{name} bwd"] = bw - fw, bc - fc
        res[f"{name} fwd+bwd"] = bw, bc
    return res


def show(res):
    for k, (w, c) in res.items():
        print(f"{k:14s} wall {1e3 * w:6.2f} ms   cpu {1e3 * c:6.2f} ms")


if args.json:
    print(json.dumps(worker()))
    sys.exit(0)
if not args.base:
    print(f"threads {args.threads}, batch {args.batch}, {args.dtype}, load {os.getloadavg()[0]:.1f}")
    show(worker())
    sys.exit(0)

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
cmd = [sys.executable, os.path.abspath(__file__), "--json", "--threads", str(args.threads), "--batch",
       str(args.batch), "--repeats", str(args.repeats), "--dtype", args.dtype, "--block", str(args.block)]


def run(path):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
    return json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)


loads, ratios, base_t, new_t = [], {}, {}, {}
for r in range(args.rounds):
    loads.append(os.getloadavg()[0])
    order = (("base", args.base), ("new", here)) if r % 2 == 0 else (("new", here), ("base", args.base))
    got = {name: run(path) for name, path in order}
    for k in got["new"]:
        i = 0 if args.threads > 1 else 1  # 2 threads: wall; 1 thread: CPU time
        ratios.setdefault(k, []).append(got["base"][k][i] / got["new"][k][i])
        base_t.setdefault(k, []).append(got["base"][k][i])
        new_t.setdefault(k, []).append(got["new"][k][i])
what = "wall" if args.threads > 1 else "CPU time"
print(f"block {args.block}, threads {args.threads}, batch {args.batch}, {args.dtype}, {args.rounds} ABBA rounds, {what}, "
      f"load {min(loads):.1f}-{max(loads):.1f}")
print("| part | base ms | new ms | base/new (median) | range |")
print("|---|---|---|---|---|")
for k, v in ratios.items():
    print(f"| {k} | {1e3 * statistics.median(base_t[k]):.2f} | {1e3 * statistics.median(new_t[k]):.2f} | "
          f"{statistics.median(v):.2f} | {min(v):.2f}-{max(v):.2f} |")
