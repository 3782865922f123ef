"""Transfer learning (issue 12): training a new head on a frozen bottom, seconds per epoch.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_transfer.py [--model mlp|cnn] [--rounds 5]
    ... --baseline /work/main/python      # also time "frozen" with another fastnn build (its own process)

The model is fastnn.models.mlp (784-256-128-10) or simple_cnn; the bottom is everything below the
last Linear, the head a new Linear(128, 10). Variants, each timed one epoch at a time, all of them
once per round in a rotating order (paired, interleaved), Adam 1e-3, batch 128, 60k images:

    full          every layer trainable (fine-tuning's cost);
    frozen        bottom requires_grad_(False).eval(): fit runs the bottom's forward every epoch,
                  and no backward below the head (Sequential stops at the lowest trainable layer);
    cached        the head alone on fastnn.train.cache_features(bottom, X) (the one-time caching is
                  reported on its own);
    torch-frozen  PyTorch 2.13, the same model, bottom requires_grad_(False) and eval(), a plain loop;
    torch-cached  PyTorch, the head alone on the bottom's outputs computed once under no_grad.
    baseline      (--baseline DIR) "frozen" with the fastnn found in DIR, in a subprocess per round.

Prints the median epoch seconds and every variant's ratio to "frozen" (above 1: slower than it).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

THREADS = int(os.environ.get("FASTNN_BENCH_THREADS", "2"))
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

import fastnn  # noqa: E402
from fastnn import models, nn, optim  # noqa: E402

BATCH, LR, SEED = 128, 1e-3, 0


def data(model):
    (X, y), _ = fastnn.datasets.fashion_mnist(flatten=model == "mlp")
    return X, y


def fastnn_split(model_name):
    """(bottom, head, whole model): the zoo model below its last Linear, and a new head."""
    fastnn.manual_seed(SEED)
    if model_name == "mlp":  # models.mlp() written out: a --baseline build may predate it
        layers = []
        for n_in, n_out in ((784, 256), (256, 128)):
            layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(), nn.Dropout(0.2)]
    else:
        layers = list(models.simple_cnn())[:-1]
    model = nn.Sequential(*layers, nn.Linear(128, 10))
    return model[:-1], model[-1], model


def fastnn_variant(name, model_name, X, y):
    """A function training one epoch of variant `name` (and, for cached, the caching seconds)."""
    bottom, head, model = fastnn_split(model_name)
    if name != "full":
        bottom.requires_grad_(False).eval()
    trained, inputs, setup = model, X, 0.0
    if name == "cached":
        start = time.perf_counter()
        inputs = fastnn.train.cache_features(bottom, X)
        setup = time.perf_counter() - start
        trained = head
    opt = optim.Adam(trained.parameters(), lr=LR)
    epoch = [0]

    def run():
        fastnn.fit(trained, inputs, y, optimizer=opt, epochs=epoch[0] + 1, initial_epoch=epoch[0], batch_size=BATCH,
                   seed=SEED, verbose=0)
        epoch[0] += 1

    return run, setup


def torch_variant(name, model_name, X, y):
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    t = torch.nn
    if model_name == "mlp":
        bottom = t.Sequential(t.Linear(784, 256), t.BatchNorm1d(256), t.ReLU(), t.Dropout(0.2),
                              t.Linear(256, 128), t.BatchNorm1d(128), t.ReLU(), t.Dropout(0.2))
    else:
        bottom = t.Sequential(t.Conv2d(1, 32, 3, padding=1, bias=False), t.BatchNorm2d(32), t.ReLU(), t.MaxPool2d(2),
                              t.Conv2d(32, 64, 3, padding=1, bias=False), t.BatchNorm2d(64), t.ReLU(), t.MaxPool2d(2),
                              t.Flatten(), t.Linear(3136, 128), t.ReLU(), t.Dropout(0.5))
    head = t.Linear(128, 10)
    bottom.requires_grad_(False).eval()
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    setup = 0.0
    if name == "torch-cached":
        start = time.perf_counter()
        with torch.no_grad():
            tX = torch.cat([bottom(tX[i:i + 1024]) for i in range(0, len(tX), 1024)])
        setup = time.perf_counter() - start
    opt = torch.optim.Adam(head.parameters(), lr=LR)
    forward = head if name == "torch-cached" else (lambda xb: head(bottom(xb)))

    def run():
        perm = torch.randperm(len(tX))
        for i in range(0, len(tX), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(forward(tX[idx]), ty[idx]).backward()
            opt.step()

    return run, setup


def baseline_epoch(path, model_name):
    """Seconds of one "frozen" epoch (after a warm-up epoch) with the fastnn under `path`."""
    code = ("import sys, time; sys.argv = ['x']; import bench_transfer as b; X, y = b.data(%r); "
            "run, _ = b.fastnn_variant('frozen', %r, X, y); run(); s = time.perf_counter(); run(); "
            "print(time.perf_counter() - s)") % (model_name, model_name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([path, os.path.dirname(os.path.abspath(__file__))]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default=None, help="a directory whose fastnn times 'frozen' as well")
    args = parser.parse_args()
    fastnn.set_num_threads(THREADS)
    X, y = data(args.model)
    variants, setups = {}, {}
    for name in ("full", "frozen", "cached"):
        variants[name], setups[name] = fastnn_variant(name, args.model, X, y)
    try:
        import torch  # noqa: F401

        for name in ("torch-frozen", "torch-cached"):
            variants[name], setups[name] = torch_variant(name, args.model, X, y)
    except ImportError:
        print("torch not installed: its variants are skipped")
    for run in variants.values():  # warm-up epoch
        run()
    times = {name: [] for name in variants}
    if args.baseline:
        times["baseline"] = []
    names = list(times)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name == "baseline":
                times[name].append(baseline_epoch(args.baseline, args.model))
                continue
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"{args.model}, {len(X)} images, batch {BATCH}, {THREADS} threads, {args.rounds} rounds; "
          f"load {' '.join(load)}")
    ref = statistics.median(times["frozen"])
    print(f"{'variant':<14}{'epoch s':>9}{'/ frozen':>10}{'setup s':>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        setup = f"{setups[name]:>9.2f}" if setups.get(name) else ""
        print(f"{name:<14}{med:>9.3f}{med / ref:>10.2f}{setup}")


if __name__ == "__main__":
    main()
