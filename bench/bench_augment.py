"""Augmentation on the fly (issue 12): epoch time with shift + flip + rotation in fit's C++ loop
against the same epoch without (target <= 1.1x), and the augmentation alone against torch doing
the same ops on tensors (torchvision is not a dependency: torch's affine_grid + grid_sample).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/bench_augment.py
    ... bench/bench_augment.py --rounds 7 --models mlp,cnn --cnn-images 2000
    FASTNN_BENCH_THREADS=1 ... bench/bench_augment.py --cpu-time   # on a loaded machine

Epochs: Fashion-MNIST (the full set if downloaded, else the bundled 5k subset), batch 128, Adam
1e-3. Each round times one fit() epoch without and one with augment=Compose([RandomShift(2),
RandomHorizontalFlip(), RandomRotation(15)]) back to back, in alternating order; the ratio is the
median of the per-round ratios (paired, so load drifts cancel). Models: "mlp" (BENCH.md mlp-s,
784-32-32-10 with BatchNorm, on flat data with shape=(1, 28, 28)) and "cnn" (models.simple_cnn).

Throughput: a batch of 128 images 1x28x28 float32, the same three ops. fastnn: augment_batch
(counter-based draws per image; shift and flip copied straight into the rotation's bordered input,
then one bilinear pass), and the same with compose=False (one pass per op). torch, given its
fastest form: per-image draws with torch.rand/randint, the three ops composed into one affine
matrix per image, then one affine_grid + grid_sample (bilinear, zero padding, align_corners=False,
which samples at the same pixel centres). Before timing, a rotation-only batch is checked to agree
between the two (the same drawn angles) to float32 rounding.
"""

import argparse
import math
import os
import statistics
import time

THREADS = int(os.environ.get("FASTNN_BENCH_THREADS", "2"))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

import fastnn  # noqa: E402
from fastnn import augment as A  # noqa: E402
from fastnn import functional as F  # noqa: E402

try:
    import torch

    torch.set_num_threads(THREADS)
except ImportError:
    torch = None

fastnn.set_num_threads(THREADS)
BATCH = 128
SHAPE = (1, 28, 28)
SHIFT, DEGREES = 2, 15.0


def pipeline():
    return A.Compose([A.RandomShift(SHIFT), A.RandomHorizontalFlip(), A.RandomRotation(DEGREES)], shape=SHAPE)


def build(name):
    fastnn.manual_seed(0)
    if name == "cnn":
        return fastnn.models.simple_cnn(), 4
    nn = fastnn.nn
    return nn.Sequential(nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32), nn.BatchNorm1d(32),
                         nn.ReLU(), nn.Linear(32, 10)), 1


def epoch_ratios(name, X, y, rounds, clock=time.perf_counter):
    """Per round: (seconds without, seconds with augmentation) of one epoch each, alternating order."""
    model, _ = build(name)
    if name == "cnn":
        X = X.reshape((-1,) + SHAPE)
    opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
    aug = pipeline()

    def epoch(augment, e):
        start = clock()
        fastnn.fit(model, X, y, optimizer=opt, epochs=1, batch_size=BATCH, seed=e, verbose=0, augment=augment)
        return clock() - start

    epoch(None, 0), epoch(aug, 0)  # warm-up: workspaces, caches
    rows = []
    for r in range(rounds):
        if r % 2 == 0:
            plain = epoch(None, r)
            augmented = epoch(aug, r)
        else:
            augmented = epoch(aug, r)
            plain = epoch(None, r)
        rows.append((plain, augmented))
    return rows


def torch_augment(x):
    """shift + flip + rotation as torch's fastest form: one composed affine grid_sample per batch."""
    n, _, h, w = x.shape
    dy = torch.randint(-SHIFT, SHIFT + 1, (n,), dtype=x.dtype)
    dx = torch.randint(-SHIFT, SHIFT + 1, (n,), dtype=x.dtype)
    flip = torch.rand(n) < 0.5
    th = (torch.rand(n, dtype=x.dtype) * 2 - 1) * math.radians(DEGREES)
    cs, sn = torch.cos(th), torch.sin(th)
    # output -> rotated-source normalised coordinates (inverse of the counter-clockwise rotation), then
    # un-flip and un-shift: x_in = s * x_rot - 2 dx / W, y_in = y_rot - 2 dy / H
    sign = torch.where(flip, -1.0, 1.0).to(x.dtype)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = sign * cs, -sign * sn * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sn * w / h, cs
    theta[:, 0, 2], theta[:, 1, 2] = -2 * dx / w, -2 * dy / h
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def check_torch_agrees(x):
    """Rotation only, the angles fastnn drew: torch's grid_sample and fastnn's kernel sample alike."""
    ops = A.RandomRotation(DEGREES)._spec()
    params = F.augment_params(ops, SHAPE, len(x), 1, 0)
    ours = F.augment_apply(x, ops, params)
    th = torch.tensor(np.radians(params[:, 0, 0]))
    n, h, w = len(x), SHAPE[1], SHAPE[2]
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(th), -torch.sin(th) * h / w
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(th) * w / h, torch.cos(th)
    xt = torch.from_numpy(x.astype(np.float64))
    grid = torch.nn.functional.affine_grid(theta, list(xt.shape), align_corners=False)
    theirs = torch.nn.functional.grid_sample(xt, grid, mode="bilinear", padding_mode="zeros",
                                             align_corners=False).numpy()
    diff = float(np.abs(ours - theirs).max())
    assert diff < 1e-5, f"fastnn and torch rotations differ by {diff}"
    return diff


def throughput(x, rounds, clock=time.perf_counter):
    """Median seconds per batch of fastnn (composed, and one pass per op) and torch, timed alternately."""
    spec = pipeline()._spec()
    xt = torch.from_numpy(x) if torch else None
    reps = 20
    runs = {"composed": lambda step: F.augment_batch(x, spec, 0, step),
            "per_op": lambda step: F.augment_batch(x, spec, 0, step, compose=False)}
    if torch is not None:
        runs["torch"] = lambda step: torch_augment(xt)
    times = {name: [] for name in runs}
    for r in range(rounds + 1):
        for name, run in (runs.items() if r % 2 == 0 else reversed(list(runs.items()))):
            start = clock()
            for i in range(reps):
                run(r * reps + i)
            if r:  # round 0 warms up
                times[name].append((clock() - start) / reps)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--cnn-images", type=int, default=2000, help="training images for the cnn epochs")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by the process's CPU time (with FASTNN_BENCH_THREADS=1: the work itself, for a "
                             "machine whose other load makes wall times meaningless)")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    (X, y), _ = fastnn.datasets.fashion_mnist()
    print(f"fastnn {fastnn.__version__}, {THREADS} threads, {len(X)} training images, batch {BATCH}, "
          f"{'CPU' if args.cpu_time else 'wall'} time; "
          f"load average {os.getloadavg()[0]:.1f} (timings under load: compare ratios)")
    for name in args.models.split(","):
        n = args.cnn_images if name == "cnn" else len(X)
        rows = epoch_ratios(name, X[:n], y[:n], args.rounds, clock)
        ratios = [a / p for p, a in rows]
        plain = statistics.median(p for p, _ in rows)
        print(f"{name:4s} epoch of {n} images: without {plain:.3f} s, with shift+flip+rotation "
              f"{statistics.median(a for _, a in rows):.3f} s; ratio median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f}; target <= 1.1)")
    x = X[:BATCH].reshape((BATCH,) + SHAPE).copy()
    if torch is not None:
        print(f"torch rotation agrees with fastnn's to {check_torch_agrees(x):.1e}")
    t = throughput(x, args.rounds, clock)
    line = (f"augment a batch of {BATCH}x1x28x28: fastnn {t['composed'] * 1e6:.0f} us ({BATCH / t['composed']:,.0f} "
            f"images/s); one pass per op {t['per_op'] * 1e6:.0f} us (per-op / composed {t['per_op'] / t['composed']:.2f})")
    if "torch" in t:
        line += f"; torch {t['torch'] * 1e6:.0f} us (torch / fastnn {t['torch'] / t['composed']:.2f})"
    print(line)

if __name__ == "__main__":
    main()
