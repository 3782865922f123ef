"""Hessian-vector products, fastnn.hvp (every call checks X and y) and fastnn.curvature_operator's
products (X and y checked once, for loops of products) vs one fastnn gradient (fastnn.loss_and_grad) vs torch's
double backward (autograd.grad of g·v through create_graph=True, the same weights), cross-entropy,
float32, timed paired and alternating (the machine may be loaded: compare within one run, as ratios).
Each round starts at the next implementation (a rotation), so that none always runs first after
torch's call, whose cold caches cost the call after it ~0.15 ms (it was always fastnn.hvp's).
--clock cpu times CPU time (time.process_time; for 1-thread runs on a loaded machine) instead of wall time.

    --model mlp: the seeds' 784-32-32-10 ReLU MLP on 1024 samples (BENCH.md's H·v target)
    --model cnn: BENCH.md's cnn (models.simple_cnn, dropout 0, training mode: BatchNorm through its
                 batch statistics) on 128 images

    PYTHONPATH=python python bench/bench_hvp.py [--model mlp|cnn] [--repeats R] [--threads N] [--n N] [--clock wall|cpu]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fastnn
from fastnn import models, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DESCRIPTION = {"mlp": "784-32-32-10 ReLU MLP", "cnn": "simple_cnn (28x28x1)"}
DEFAULTS = {"mlp": (1024, 30), "cnn": (128, 10)}  # samples, repeats


def model_and_data(kind, n, seed=0):
    fastnn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        m = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
        X = rng.standard_normal((n, 784)).astype(np.float32)
    else:
        m = models.simple_cnn(dropout=0)
        X = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    return m, X, rng.integers(0, 10, n)


def torch_twin(kind, m):
    import torch

    if kind == "mlp":
        tm = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                 torch.nn.Linear(32, 10))
    else:
        from tests.models import torch_models

        tm = torch_models.simple_cnn(dropout=0)
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    return tm.train()


def torch_hvp(tm, X, y):
    import torch

    params = list(tm.parameters())
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)

    def hvp(v):
        vs, o = [], 0
        for p in params:
            vs.append(v[o:o + p.numel()].view_as(p))
            o += p.numel()
        g = torch.autograd.grad(torch.nn.functional.cross_entropy(tm(tX), ty), params, create_graph=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, vs))
        return torch.cat([h.reshape(-1) for h in torch.autograd.grad(dot, params)])

    return hvp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(DESCRIPTION), default="mlp")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n", type=int, default=None, help="samples (default 1024 for mlp, 128 for cnn)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter; cpu: time.process_time (all threads' CPU time)")
    a = ap.parse_args()
    n_default, repeats_default = DEFAULTS[a.model]
    repeats = a.repeats or repeats_default
    if a.threads:
        fastnn.set_num_threads(a.threads)
    m, X, y = model_and_data(a.model, a.n or n_default)
    n = m.flatten_parameters_().params.size
    v = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    op = fastnn.curvature_operator(m, "cross_entropy", X, y)
    fns = {"fastnn hvp": lambda: fastnn.hvp(m, "cross_entropy", X, y, v),
           "fastnn operator H(v)": lambda: op(v),
           "fastnn gradient": lambda: fastnn.loss_and_grad(m, "cross_entropy", X, y)}
    try:
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        th = torch_hvp(torch_twin(a.model, m), X, y)
        tv = torch.from_numpy(v)
        fns["torch double backward"] = lambda: th(tv)
        got, want = fastnn.hvp(m, "cross_entropy", X, y, v), th(tv).numpy()
        err = np.abs(got - want).max() / (np.abs(want).max() + 1e-30)
        print(f"max |fastnn - torch| / max |torch H v| = {err:.2e}")
    except ImportError:
        print("torch not installed: fastnn only")
    clock = time.perf_counter if a.clock == "wall" else time.process_time
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
    names = list(fns)
    for r in range(repeats):  # alternating: each round times every implementation once, from the r-th on
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = clock()
            fns[k]()
            times[k].append(clock() - t0)
    med = {k: float(np.median(t)) for k, t in times.items()}
    print(f"{DESCRIPTION[a.model]}, {len(X)} samples, float32, {n} parameters; {repeats} paired rounds (median, "
          f"{a.clock} time)")
    for k, t in med.items():
        print(f"  {k:24s} {t * 1e3:8.3f} ms")
    overhead = np.median(np.subtract(times["fastnn hvp"], times["fastnn operator H(v)"]))
    print(f"  hvp - operator (paired)  {overhead * 1e3:8.3f} ms  (the per-call checks of X, y and the model)")
    print(f"  hvp / gradient         {med['fastnn hvp'] / med['fastnn gradient']:.2f}x  (target <= 3)")
    if "torch double backward" in med:
        print(f"  torch / fastnn hvp     {med['torch double backward'] / med['fastnn hvp']:.2f}x  (target >= 3)")
        print(f"  torch / operator H(v)  {med['torch double backward'] / med['fastnn operator H(v)']:.2f}x")


if __name__ == "__main__":
    main()
