"""Where a training batch of BENCH.md's CNN goes: GEMM, im2col/col2im, BatchNorm(+ReLU), pooling,
optimizer, the rest. fastnn has no profiler hook inside its C++ epoch loop, so each step of the
model's execution plan (e.g. "BatchNorm2d+relu", the fused pair fit runs) is timed on its own at
the CNN's shapes (batch 128, train mode, forward and backward), the convolutions are split into
their im2col/col2im part (the same patches, timed with fastnn.functional.im2col/col2im) and the
rest (GEMM), the Adam step is timed on the model's 421,738 parameters, and the sum is compared with
a real fit() epoch's time per batch (the difference: data gather, loss, loop).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/profile_cnn.py
    ... bench/profile_cnn.py --threads 1 --batch 128 --repeats 20
    ... bench/profile_cnn.py --torch          # also torch's per-layer times at the same shapes

The im2col share is an estimate: the conv kernel makes its patches image by image while they
stay in L2 (kernels/conv.h), so the whole-batch functional.im2col/col2im, which writes the batch's
patches to memory, is an upper bound for it.
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
    """The model's children grouped as its execution plan fuses them: [(plan entry, [modules])]."""
    mods, groups, i = list(model), [], 0
    for entry in model.execution_plan:
        n = entry.count("+") + 1
        groups.append((entry, mods[i:i + n]))
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

    # the convolutions' im2col (forward, recomputed in backward) and col2im (backward) on the same shapes
    for r in rows:
        conv = r["mods"][0]
        if not isinstance(conv, nn.Conv2d):
            continue
        xin = rng.standard_normal(r["in"]).astype(np.float32)
        k, s, p, d = conv.kernel_size, conv.stride, conv.padding, conv.dilation
        cols = F.im2col(xin, k, s, p, d)
        t_im2col = median_time(lambda: F.im2col(xin, k, s, p, d))
        t_col2im = median_time(lambda: F.col2im(cols, xin.shape, k, s, p, d))
        r["im2col"] = min(2 * t_im2col + t_col2im, r["fwd"] + r["bwd"])  # an upper bound (module docstring)

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
            fractions["im2col/col2im (conv)"] = fractions.get("im2col/col2im (conv)", 0) + r["im2col"]
            fractions["GEMM (conv)"] = fractions.get("GEMM (conv)", 0) + total - r["im2col"]
            if len(r["mods"]) > 1:
                print(f"|   (the conv's plan step also runs {[type(m).__name__ for m in r['mods'][1:]]}) | | | | |")
        else:
            fractions[cat] = fractions.get(cat, 0) + total
    fractions[f"optimizer (Adam, {n_params:,} params)"] = t_opt
    parts = sum(fractions.values())
    fractions["rest: gather, loss, loop (batch - parts)"] = max(batch_s - parts, 0.0)
    print(f"\nfit(): {1e3 * batch_s:.2f} ms per batch ({batch_s * 60000 / args.batch:.1f} s per 60k-image epoch); "
          f"the parts timed alone add up to {1e3 * parts:.2f} ms")
    print("\n| part | ms per batch | share of fit's batch |")
    print("|---|---|---|")
    for name, t in sorted(fractions.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {1e3 * t:.2f} | {100 * t / batch_s:.0f}% |")

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
