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
    ... bench/profile_cnn.py --model densenet # DenseNet-BC k=12 (6,6,6): its steps, and each dense
                                              # block split into its layers' BN-ReLU and convs

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
ap.add_argument("--model", choices=("cnn", "densenet"), default="cnn")
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
    """The model's children grouped as its execution plan fuses them: [(plan entry, [modules], step)].
    A Conv2d+BatchNorm2d(+relu(+MaxPool2d)) step is one pass only in eval mode; in training it runs
    the conv, then the rest (BatchNorm+ReLU, pooled in BN's output pass), so they are timed apart: the
    rest as the whole step (`step`, its modules) minus the conv (None for the other entries)."""
    mods, groups, i = list(model), [], 0
    for entry in model.execution_plan:
        n = entry.count("+") + 1
        group = mods[i:i + n]
        if entry.startswith("Conv2d+") and n > 1:
            groups += [("Conv2d", group[:1], None), (entry.split("+", 1)[1], group[1:], group)]
        else:
            groups.append((entry, group, None))
        i += n
    assert i == len(mods), (model.execution_plan, len(mods))
    return groups


def category(entry):
    head = entry.split("+")[0]
    return {"Conv2d": "conv", "Linear": "GEMM (linear)", "BatchNorm2d": "BN (+ReLU, +pool when fused)", "BatchNorm1d": "BN (+ReLU, +pool when fused)",
            "MaxPool2d": "pooling", "AvgPool2d": "pooling", "AdaptiveAvgPool2d": "pooling",
            "Dropout": "dropout", "ReLU": "elementwise"}.get(head, "other")


def fit_batch_seconds(model, X, y, batches, epochs=3):
    """fit()'s median time per batch over `epochs` epochs of `batches` batches, after a warm-up epoch."""
    opt = optim.Adam(model.parameters(), lr=1e-3)
    Xe, ye = X[:batches * args.batch], y[:batches * args.batch]
    fastnn.fit(model, Xe, ye, optimizer=opt, epochs=1, batch_size=args.batch, verbose=0)
    ends = [time.perf_counter()]
    fastnn.fit(model, Xe, ye, optimizer=opt, epochs=epochs, batch_size=args.batch, verbose=0,
               callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: ends.append(time.perf_counter()))])
    return statistics.median(np.diff(ends)) / batches, opt


def step_times(step, x, rng, repeats=args.repeats):
    """(output, forward s, backward s) of a module in train mode on x, with a random upstream gradient."""
    step.train()
    out = step(x)
    g = rng.standard_normal(out.shape).astype(x.dtype)
    fwd = median_time(lambda: step(x), repeats)
    both = median_time(lambda: (step(x), step.backward(g)), repeats)
    return out, fwd, both - fwd


def densenet_main():
    """DenseNet-BC k=12 (6,6,6): fit's time per batch, each step of model.features timed alone, and
    each dense block split into its layers' parts, timed alone at their shapes (the BN-ReLU on a
    contiguous input, where the block reads a channel slice of its feature buffer): what the block
    takes beyond its parts is its own work (the copies into and out of its buffers, the BN-ReLU
    outputs recomputed in backward, the gradients added into the shared gradient buffer)."""
    rng = np.random.default_rng(0)
    (X, y), _ = fastnn.datasets.fashion_mnist(flatten=False)
    fastnn.manual_seed(0)
    model = fastnn.models.densenet(12, (6, 6, 6))
    batch_s, _ = fit_batch_seconds(model, X, y, batches=4, epochs=2)
    x = X[:args.batch].copy()
    repeats = max(3, args.repeats // 3)
    print(f"threads {args.threads}, batch {args.batch}, fastnn {fastnn.__version__} "
          f"({fastnn.build_info()['isa']}, gemm {fastnn.gemm_backend()['name']})")
    print(f"\nfit(): {1e3 * batch_s:.1f} ms per batch ({args.batch / batch_s:.0f} images/s)")
    print("\n| step | input | fwd ms | bwd ms | fwd+bwd ms |")
    print("|---|---|---|---|---|")
    parts, total = {}, 0.0
    for name, step in model.features.named_children():
        out, fwd, bwd = step_times(step, x, rng, repeats)
        total += fwd + bwd
        print(f"| {name} | {x.shape} | {1e3 * fwd:.1f} | {1e3 * bwd:.1f} | {1e3 * (fwd + bwd):.1f} |")
        if isinstance(step, nn.DenseBlock):
            inside = 0.0
            for layer in step.children():
                h = rng.standard_normal((x.shape[0], layer.norm1.num_features) + x.shape[2:]).astype(np.float32)
                convs = [m for m in layer.children() if isinstance(m, nn.Conv2d)]
                groups = []
                for i, conv in enumerate(convs):  # fresh layers of the same shapes
                    groups.append((f"BN-ReLU {i + 1}", [nn.BatchNorm2d(conv.in_channels), nn.ReLU()]))
                    groups.append((f"conv{i + 1} {_conv_label(conv)}",
                                   [nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                              padding=conv.padding, bias=False)]))
                for label, group in groups:
                    h, f, b = step_times(nn.Sequential(*group), h, rng, repeats)
                    key = f"{name} {label}"
                    parts[key] = parts.get(key, 0.0) + f + b
                    inside += f + b
            parts[f"{name} own work (copies, recompute, gradient sums)"] = fwd + bwd - inside
        else:
            parts[name] = fwd + bwd
        x = out
    print(f"\nsteps timed alone: {1e3 * total:.1f} ms")
    print("\n| part | ms per batch (timed alone) | share |")
    print("|---|---|---|")
    for key, t in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"| {key} | {1e3 * t:.1f} | {100 * t / total:.0f}% |")


def _conv_label(conv):
    k = conv.kernel_size
    return f"{k[0]}x{k[1]} ->{conv.out_channels}"  # one key for the block's layers


def main():
    if args.model == "densenet":
        return densenet_main()
    rng = np.random.default_rng(0)
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(flatten=False)
    fastnn.manual_seed(0)
    model = fastnn.models.simple_cnn()
    n_params = model.flat_parameters().size
    # a real epoch (the first 100 batches, after one warm-up epoch part): time per batch
    batch_s, opt = fit_batch_seconds(model, X, y, batches=min(100, len(X) // args.batch))
    plan = model.execution_plan

    # each plan step on its own: forward + backward in train mode at the CNN's shapes
    x = X[:args.batch].copy()
    rows = []
    step_in = x
    for entry, mods, whole in plan_groups(model):
        if whole is None:
            step_in = x
        step = nn.Sequential(*(mods if whole is None else whole)).train()
        out = step(step_in)
        g = rng.standard_normal(out.shape).astype(np.float32)
        fwd = median_time(lambda: step(step_in))
        bwd = median_time(lambda: (step(step_in), step.backward(g))) - fwd
        if whole is not None:  # the step minus its conv, the row before
            fwd, bwd = fwd - rows[-1]["fwd"], bwd - rows[-1]["bwd"]
        rows.append({"entry": entry, "in": x.shape, "out": out.shape, "fwd": fwd, "bwd": bwd, "mods": mods})
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
