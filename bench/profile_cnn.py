"""Where a training batch of BENCH.md's CNN goes: GEMM, im2col/col2im, BatchNorm(+ReLU), pooling,
optimizer, the rest. fastnn has no profiler hook inside its C++ epoch loop, so each step of the
model's execution plan (e.g. "BatchNorm2d+relu", the fused pair fit runs) is timed on its own at
the CNN's shapes (batch 128, train mode, forward and backward), the convolutions are split into
GEMM (their products timed alone at the same shapes) and the rest (im2col/col2im, bias, memory
passes), the Adam step is timed on the model's 421,738 parameters, and each part's share of their
sum is printed next to a real fit() epoch's time per batch. Timed alone, each step also pays a
Python call and its own checks, so the parts add up to more than fit's batch (~1.2-1.5x measured).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/profile_cnn.py
    ... bench/profile_cnn.py --threads 1 --batch 128 --repeats 20
    ... bench/profile_cnn.py --torch          # also torch's per-layer times at the same shapes

The split of a convolution is an estimate: its GEMM time is that of its per-image products at
their shapes (three batched products over the batch, fastnn.functional.bmm), and the rest of its
time (im2col, col2im, the bias, reading and writing the planes) is its measured time minus that.
"""

import argparse
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--repeats", type=int, default=15)
ap.add_argument("--torch", action="store_true", help="also time torch's layers at the same shapes")
args = ap.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

import fastnn  # noqa: E402
from fastnn import functional as F  # noqa: E402
from fastnn import nn, optim  # noqa: E402
from fastnn.train import LambdaCallback  # noqa: E402

fastnn.set_num_threads(args.threads)


def median_time(fn, repeats=args.repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def plan_groups(model):
    """The model's children grouped as its execution plan fuses them: [(plan entry, [modules])]. A
    Conv2d+BatchNorm2d(+relu) step is one pass only in eval mode; in training it runs the conv, then
    the BatchNorm(+ReLU) layer, so they are timed apart."""
    mods, groups, i = list(model), [], 0
    for entry in model.execution_plan:
        n = entry.count("+") + 1
        group = mods[i:i + n]
        if entry.startswith("Conv2d+") and n > 1:
            groups += [("Conv2d", group[:1]), (entry.split("+", 1)[1], group[1:])]
        else:
            groups.append((entry, group))
        i += n
    assert i == len(mods), (model.execution_plan, len(mods))
    return groups


def category(entry):
    head = entry.split("+")[0]
    return {"Conv2d": "conv", "Linear": "GEMM (linear)", "BatchNorm2d": "BN (+ReLU)", "BatchNorm1d": "BN (+ReLU)",
            "MaxPool2d": "pooling", "AvgPool2d": "pooling", "AdaptiveAvgPool2d": "pooling",
            "Dropout": "dropout", "ReLU": "elementwise"}.get(head, "other")


def main():
    rng = np.random.default_rng(0)
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(flatten=False)
    fastnn.manual_seed(0)
    model = fastnn.models.simple_cnn()
    n_params = model.flat_parameters().size
    opt = optim.Adam(model.parameters(), lr=1e-3)
    # a real epoch (the first 100 batches, after one warm-up epoch part): time per batch
    nb = min(100, len(X) // args.batch)
    Xe, ye = X[:nb * args.batch], y[:nb * args.batch]
    fastnn.fit(model, Xe, ye, optimizer=opt, epochs=1, batch_size=args.batch, verbose=0)
    ends = [time.perf_counter()]
    fastnn.fit(model, Xe, ye, optimizer=opt, epochs=3, batch_size=args.batch, verbose=0,
               callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: ends.append(time.perf_counter()))])
    batch_s = statistics.median(np.diff(ends)) / nb
    plan = model.execution_plan

    # each plan step on its own: forward + backward in train mode at the CNN's shapes
    x = X[:args.batch].copy()
    rows = []
    for entry, mods in plan_groups(model):
        step = nn.Sequential(*mods).train()
        out = step(x)
        g = rng.standard_normal(out.shape).astype(np.float32)
        fwd = median_time(lambda: step(x))
        both = median_time(lambda: (step(x), step.backward(g)))
        rows.append({"entry": entry, "in": x.shape, "out": out.shape, "fwd": fwd, "bwd": both - fwd, "mods": mods})
        x = out

    # the convolutions' GEMM: the kernel's per-image products at their shapes (O x CKK by CKK x PQ forward;
    # dW from O x PQ by PQ x CKK, the patches' gradient CKK x O by O x PQ backward), timed as one bmm each
    # over the batch; what the conv takes beyond them is im2col/col2im, the bias and the passes over memory
    for r in rows:
        conv = r["mods"][0]
        if not isinstance(conv, nn.Conv2d):
            continue
        n, o = r["out"][0], r["out"][1]
        k = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
        pq = r["out"][2] * r["out"][3]
        mats = {shape: rng.standard_normal((n,) + shape).astype(np.float32) for shape in
                ((o, k), (k, pq), (o, pq), (pq, k), (k, o))}
        products = (((o, k), (k, pq)), ((o, pq), (pq, k)), ((k, o), (o, pq)))
        r["gemm"] = min(sum(median_time(lambda a=a, b=b: F.bmm(mats[a], mats[b])) for a, b in products),
                        r["fwd"] + r["bwd"])

    # the optimizer step on the whole model
    for prm in model.parameters():
        prm.grad[...] = rng.standard_normal(prm.grad.shape).astype(np.float32) * 1e-3
    t_opt = median_time(lambda: opt.step())

    fractions = {}
    print(f"threads {args.threads}, batch {args.batch}, fastnn {fastnn.__version__} "
          f"({fastnn.build_info()['isa']}, gemm {fastnn.gemm_backend()['name']}); plan {plan}")
    print("\n| plan step | input | fwd ms | bwd ms | fwd+bwd ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        total = r["fwd"] + r["bwd"]
        print(f"| {r['entry']} | {r['in']} | {1e3 * r['fwd']:.2f} | {1e3 * r['bwd']:.2f} | {1e3 * total:.2f} |")
        cat = category(r["entry"])
        if cat == "conv":
            fractions["GEMM (conv)"] = fractions.get("GEMM (conv)", 0) + r["gemm"]
            fractions["im2col/col2im and the rest of the conv"] = (
                fractions.get("im2col/col2im and the rest of the conv", 0) + total - r["gemm"])
        else:
            fractions[cat] = fractions.get(cat, 0) + total
    fractions[f"optimizer (Adam, {n_params:,} params)"] = t_opt
    parts = sum(fractions.values())
    print(f"\nfit(): {1e3 * batch_s:.2f} ms per batch ({batch_s * 60000 / args.batch:.1f} s per 60k-image epoch); "
          f"the parts timed alone add up to {1e3 * parts:.2f} ms")
    print("\n| part | ms per batch (timed alone) | share of the parts |")
    print("|---|---|---|")
    for name, t in sorted(fractions.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {1e3 * t:.2f} | {100 * t / parts:.0f}% |")

    if args.torch:
        torch_layers(rows)


def torch_layers(rows):
    try:
        import torch
    except ImportError:
        print("torch not installed: no torch column")
        return
    torch.set_num_threads(args.threads)
    tnn = torch.nn
    print("\n| plan step | torch fwd ms | torch fwd+bwd ms |")
    print("|---|---|---|")
    for r in rows:
        layers = []
        for m in r["mods"]:
            name = type(m).__name__
            if name == "Conv2d":
                layers.append(tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                         bias=m.bias is not None))
            elif name == "Linear":
                layers.append(tnn.Linear(m.in_features, m.out_features))
            elif name == "BatchNorm2d":
                layers.append(tnn.BatchNorm2d(m.num_features))
            elif name == "MaxPool2d":
                layers.append(tnn.MaxPool2d(m.kernel_size, m.stride))
            elif name in ("ReLU", "Flatten"):
                layers.append(getattr(tnn, name)())
            elif name == "Dropout":
                layers.append(tnn.Dropout(m.p))
        step = tnn.Sequential(*layers).train()
        x = torch.randn(*r["in"], requires_grad=True)
        g = torch.randn(*r["out"])

        def fwd():
            with torch.no_grad():
                step(x)

        def both():
            x.grad = None
            step(x).backward(g)

        print(f"| {r['entry']} | {1e3 * median_time(fwd):.2f} | {1e3 * median_time(both):.2f} |")


if __name__ == "__main__":
    sys.exit(main())
