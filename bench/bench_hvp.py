"""Hessian-vector products of the 784-32-32-10 ReLU MLP on 1024 samples (cross-entropy, float32):
fastnn.hvp vs one fastnn gradient (fastnn.loss_and_grad) vs torch's double backward
(autograd.grad of g·v through create_graph=True), timed paired and alternating (the machine may
be loaded: compare within one run, as ratios).

    PYTHONPATH=python python bench/bench_hvp.py [--repeats 30] [--threads N]
"""

import argparse
import time

import numpy as np

import fastnn
from fastnn import nn


def model_and_data(seed=0, n=1024):
    rng = np.random.default_rng(seed)
    m = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    X = rng.standard_normal((n, 784)).astype(np.float32)
    y = rng.integers(0, 10, n)
    return m, X, y


def torch_hvp(m, X, y):
    import torch

    params = [torch.tensor(np.array(p.data), requires_grad=True) for p in m.parameters()]
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)

    def loss():
        w1, b1, w2, b2, w3, b3 = params
        h = torch.relu(tX @ w1.T + b1)
        h = torch.relu(h @ w2.T + b2)
        return torch.nn.functional.cross_entropy(h @ w3.T + b3, ty)

    def hvp(v):
        vs, o = [], 0
        for p in params:
            vs.append(v[o:o + p.numel()].view_as(p))
            o += p.numel()
        g = torch.autograd.grad(loss(), params, create_graph=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, vs))
        return torch.cat([h.reshape(-1) for h in torch.autograd.grad(dot, params)])

    return hvp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        fastnn.set_num_threads(a.threads)
    m, X, y = model_and_data()
    n = m.flatten_parameters_().params.size
    v = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    fns = {"fastnn hvp": lambda: fastnn.hvp(m, "cross_entropy", X, y, v),
           "fastnn gradient": lambda: fastnn.loss_and_grad(m, "cross_entropy", X, y)}
    try:
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        th = torch_hvp(m, X, y)
        tv = torch.from_numpy(v)
        fns["torch double backward"] = lambda: th(tv)
        got, want = fastnn.hvp(m, "cross_entropy", X, y, v), th(tv).numpy()
        err = np.abs(got - want).max() / (np.abs(want).max() + 1e-30)
        print(f"max |fastnn - torch| / max |torch H v| = {err:.2e}")
    except ImportError:
        print("torch not installed: fastnn only")
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
    for _ in range(a.repeats):  # alternating: each round times every implementation once
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(t)) for k, t in times.items()}
    print(f"784-32-32-10 ReLU MLP, {len(X)} samples, float32, {n} parameters; {a.repeats} paired rounds (median)")
    for k, t in med.items():
        print(f"  {k:24s} {t * 1e3:8.3f} ms")
    print(f"  hvp / gradient         {med['fastnn hvp'] / med['fastnn gradient']:.2f}x  (target <= 3)")
    if "torch double backward" in med:
        print(f"  torch / fastnn hvp     {med['torch double backward'] / med['fastnn hvp']:.2f}x  (target >= 3)")


if __name__ == "__main__":
    main()
