"""Training: seconds per epoch on Fashion-MNIST (BENCH.md workloads mlp-s and mlp-l).

One round = one epoch over the 60k training images, batch 128, Adam lr 1e-3; training continues
from round to round (warm-up epochs first). The test accuracy reached after the timed epochs is
recorded in extra_info (it is not what is timed).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/compare.py -k train
    FASTNN_BENCH_TRAIN_ROUNDS=1 ...     # quick check: one timed epoch per implementation

Peers: torch (the same nn.Sequential, a DataLoader-free loop: torch.randperm + index tensors per
batch, zero_grad(set_to_none=True), cross_entropy, backward, step; "torch" with the default
Adam, "torch-fused" with Adam(fused=True), PyTorch's fastest CPU optimizer, ~25% faster on mlp-s:
BENCH.md's targets are against the fastest peer) and, for mlp-l only,
scikit-learn's MLPClassifier(512, 256) one epoch per partial_fit (no BatchNorm, no dropout: the
comparison as BENCH.md specifies it).
"""

import os
import time

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.train import LambdaCallback
from conftest import bench, need, torch

try:
    from sklearn.neural_network import MLPClassifier
except ImportError:
    MLPClassifier = None

BATCH = 128
LR = 1e-3
SEED = 0
_env_rounds = os.environ.get("FASTNN_BENCH_TRAIN_ROUNDS")
ROUNDS = {"mlp-s": int(_env_rounds or 3), "mlp-l": int(_env_rounds or 2)}

# (hidden widths, dropout p after each hidden block or None)
ARCHS = {"mlp-s": ((32, 32), None), "mlp-l": ((512, 256), 0.5)}


@pytest.fixture(scope="module")
def data():
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist()  # the bundled 5k subset if the full set is missing
    return X, y, Xt, yt


def build_model(lib, arch):
    """The workload's MLP from `lib` (fastnn.nn or torch.nn: the same names and arguments)."""
    hidden, p = ARCHS[arch]
    layers, fin = [], 784
    for h in hidden:
        layers += [lib.Linear(fin, h), lib.BatchNorm1d(h), lib.ReLU()]
        if p:
            layers.append(lib.Dropout(p))
        fin = h
    layers.append(lib.Linear(fin, 10))
    return lib.Sequential(*layers)


def fastnn_trainer(arch, X, y, Xt, yt):
    """(train one epoch, test accuracy) for fastnn: fit() one epoch per call, continuing the epoch
    count. Each call also pays fit's once-per-call data check (a NaN/inf scan of X, ~5 ms for
    Fashion-MNIST); train_accuracy.py times the epochs of one fit(epochs=N) call instead."""
    fastnn.manual_seed(SEED)
    model = build_model(nn, arch)
    opt = fastnn.optim.Adam(model.parameters(), lr=LR)
    epoch = [0]

    def train_epoch():
        fastnn.fit(model, X, y, optimizer=opt, epochs=epoch[0] + 1, batch_size=BATCH, verbose=0,
                   seed=SEED, initial_epoch=epoch[0])
        epoch[0] += 1

    def train_epochs(n):
        """One fit(epochs=n) call, as users train; returns each epoch's seconds, measured from one
        epoch's end to the next (the first from the start of the call)."""
        ends = [time.perf_counter()]
        fastnn.fit(model, X, y, optimizer=opt, epochs=epoch[0] + n, batch_size=BATCH, verbose=0,
                   seed=SEED, initial_epoch=epoch[0], callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: ends.append(
                       time.perf_counter()))])
        epoch[0] += n
        return list(np.diff(ends))

    train_epoch.epochs = train_epochs
    return train_epoch, lambda: fastnn.evaluate(model, Xt, yt)["accuracy"]


def torch_trainer(arch, X, y, Xt, yt, fused=False):
    F = torch.nn.functional
    torch.manual_seed(SEED)
    model = build_model(torch.nn, arch)
    # the default Adam (for-loop over parameters on CPU), or the fused CPU kernel: faster, but opt-in
    opt = torch.optim.Adam(model.parameters(), lr=LR, **({"fused": True} if fused else {}))
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    tXt, tyt = torch.from_numpy(Xt), torch.from_numpy(yt)
    n = len(tX)

    def train_epoch():
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            xb, yb = tX[idx], ty[idx]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()

    def accuracy():
        model.eval()
        with torch.no_grad():
            return (model(tXt).argmax(1) == tyt).float().mean().item()

    return train_epoch, accuracy


def sklearn_trainer(arch, X, y, Xt, yt):
    hidden, _ = ARCHS[arch]
    clf = MLPClassifier(hidden_layer_sizes=hidden, batch_size=BATCH, solver="adam", max_iter=1,
                        learning_rate_init=LR, random_state=SEED)
    classes = np.arange(10)

    def train_epoch():
        clf.partial_fit(X, y, classes=classes)

    return train_epoch, lambda: float(clf.score(Xt, yt))


TRAINERS = {"fastnn": fastnn_trainer, "torch": torch_trainer,
            "torch-fused": lambda *a: torch_trainer(*a, fused=True), "sklearn": sklearn_trainer}


def run(benchmark, data, arch, impl):
    if impl == "sklearn" and MLPClassifier is None:
        pytest.skip("scikit-learn not installed")
    need(impl.split("-")[0])
    X, y, Xt, yt = data
    train_epoch, accuracy = TRAINERS[impl](arch, X, y, Xt, yt)
    subset = "" if len(X) == 60000 else f" ({len(X)} images only)"  # not BENCH.md's figure: say so in the table
    bench(benchmark, f"{arch} epoch{subset}", train_epoch, rounds=ROUNDS[arch])
    benchmark.extra_info["train_samples"] = len(X)
    benchmark.extra_info["epochs_trained"] = ROUNDS[arch] + 2  # bench(): one warm-up call + one warm-up round
    acc = accuracy()
    benchmark.extra_info["test_accuracy"] = round(acc, 4)
    if len(X) == 60000:  # a sanity check that the timed loop trains (PyTorch: ~0.84 after one epoch of mlp-s)
        assert acc > 0.75, f"{impl} {arch}: test accuracy {acc:.4f} after {ROUNDS[arch] + 2} epochs"


@pytest.mark.parametrize("impl", ["fastnn", "torch", "torch-fused"])
def test_mlp_s_epoch(benchmark, data, impl):
    run(benchmark, data, "mlp-s", impl)


@pytest.mark.parametrize("impl", ["fastnn", "torch", "torch-fused", "sklearn"])
def test_mlp_l_epoch(benchmark, data, impl):
    run(benchmark, data, "mlp-l", impl)
