"""The ranks' side of tests/distributed/test_distributed.py, run as
``PYTHONPATH=python:. mpirun -np 2 python tests/distributed/worker_script.py SCENARIO DIR`` (the test
passes the PYTHONPATH of the fastnn under test: tests/isolation.py child_env).

Each check prints one line ``RESULT <rank> <name> ok`` or ``RESULT <rank> <name> FAIL <reason>``;
the test reads them. Scenarios: main (equivalence, identical parameters, sync BatchNorm, sharded
evaluate/predict, the model mismatch, the checkpoint written by rank 0), resume1 (one process
resumes main's checkpoint), raising (a rank raises mid-epoch), stuck (a rank stalls past the timeout).
"""

import hashlib
import json
import os
import re
import sys
import time
import traceback

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.train import CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint
sys.modules.setdefault("torch", None)  # conftest's optional torch oracle: not needed here, 4 s to import
from tests.conftest import assert_sum_close  # noqa: E402

fastnn.set_num_threads(1)


FOLDER = sys.argv[2] if len(sys.argv) > 2 else "."


def emit(rank, line):
    """One result line, appended to FOLDER/results-<rank>.txt (the ranks' stdout interleave)."""
    with open(os.path.join(FOLDER, f"results-{rank}.txt"), "a") as f:
        f.write(line.replace("\n", " ") + "\n")


def report(rank, name, fn):
    try:
        fn()
    except Exception as e:  # the test shows the reason
        emit(rank, f"RESULT {rank} {name} FAIL {type(e).__name__}: {e} | {traceback.format_exc()!r}")
    else:
        emit(rank, f"RESULT {rank} {name} ok")


def data(n, features=12, classes=5, seed=0, dtype=np.float64, image=False):
    rng = np.random.default_rng(seed)
    shape = (n, 1, 6, 6) if image else (n, features)
    X = rng.standard_normal(shape).astype(dtype)
    y = rng.integers(0, classes, n)
    return X, y


def mlp(dtype=np.float64, bn=False, dropout=0.0, seed=1):
    fastnn.manual_seed(seed)
    layers = [nn.Linear(12, 16)] + ([nn.BatchNorm1d(16)] if bn else []) + [nn.ReLU()]
    layers += ([nn.Dropout(dropout)] if dropout else []) + [nn.Linear(16, 5)]
    return nn.Sequential(*layers).to(dtype)


def cnn(dtype=np.float64, seed=2):
    fastnn.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(36, 5)).to(dtype)


def digest(model):
    state = model.state_dict()
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(np.ascontiguousarray(state[k]).tobytes())
    return h.hexdigest()


def same_on_every_rank(comm, value, what):
    values = comm.allgather(value)
    assert all(v == values[0] for v in values), f"{what} differ between ranks: {values}"


def per_sample_grad_sums(model, X, y):
    """sum over samples of |gradient of one sample's loss| per parameter: the terms a batch gradient adds."""
    total = np.zeros(model.flat_parameters().size)
    for i in range(len(X)):
        total += np.abs(fastnn.loss_and_grad(model, "cross_entropy", X[i:i + 1], y[i:i + 1])[1])
    return total


def trajectory_terms(before, after, X, y, lr, steps, batch, momentum=0.0):
    """The terms summed into each parameter over `steps` SGD steps of `batch` samples: |theta| and
    lr times the per-sample gradients' magnitudes (at the start and the end, doubled for the drift
    between; momentum re-adds each gradient up to 1 / (1 - momentum) times)."""
    grads = np.maximum(per_sample_grad_sums(before, X, y), per_sample_grad_sums(after, X, y))
    return np.abs(after.flat_parameters()) + 2 * lr * steps * grads / batch / (1 - momentum)


def check_threads(dist_mod, comm):
    """DataParallel() lowers a rank's threads to its share of the cores that ranks with its
    affinity mask share (ranks bound to a core each keep one per core); threads=N sets N."""
    mask = sorted(os.sched_getaffinity(0))
    sharing = sum(1 for m in comm.allgather(mask) if m == mask)
    try:
        fastnn.set_num_threads(64)
        shared = dist_mod.DataParallel()
        assert shared.threads == fastnn.get_num_threads() == max(1, len(mask) // sharing), (shared.threads, mask)
        assert dist_mod.DataParallel(threads=3).threads == fastnn.get_num_threads() == 3
    finally:
        fastnn.set_num_threads(1)


def check_equivalence(dist, comm, n, epochs):
    """2 ranks x batch 64 == 1 process x batch 128 (plain SGD, float64), within the rounding of the
    batch sums: each of the T steps adds lr * (mean of 128 per-sample gradients), rounded in a sum of
    128 terms whose magnitudes the per-sample gradients give (at the start and the end, doubled for
    the drift between)."""
    X, y = data(n)
    lr = 0.1
    ref, start = mlp(), mlp()
    h_ref = fastnn.fit(ref, X, y, optimizer=optim.SGD(ref.parameters(), lr=lr), epochs=epochs, batch_size=128,
                       seed=7, verbose=0)
    model = mlp()
    hashes = []
    h = fastnn.fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=lr), epochs=epochs, batch_size=64, seed=7,
                   verbose=0, distributed=dist,
                   callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: hashes.append(digest(model)))])
    same_on_every_rank(comm, hashes, "the parameters after each epoch")
    # the logs are the global batch's: the loss a sum of positive terms, accuracy a count of n samples
    for a, b in zip(h.history["loss"], h_ref.history["loss"]):
        assert abs(a - b) <= 1e-9 * b, (h.history, h_ref.history)
    for a, b in zip(h.history["accuracy"], h_ref.history["accuracy"]):
        assert abs(a - b) <= 1.0 / n, (h.history, h_ref.history)
    steps = epochs * -(-n // 128)
    terms = trajectory_terms(start, ref, X, y, lr, steps, 128)
    assert_sum_close(model.flat_parameters(), ref.flat_parameters(), terms, 128 * steps,
                     err_msg="2 ranks x 64 vs 1 x 128")
    # evaluate and predict, sharded, give what one process gives on all the data
    local, shared = fastnn.evaluate(ref, X, y), fastnn.evaluate(ref, X, y, distributed=dist)
    assert set(local) == set(shared) and local["accuracy"] == shared["accuracy"], (local, shared)
    assert abs(local["loss"] - shared["loss"]) <= 1e-12 * (1 + abs(local["loss"])), (local, shared)
    w = {k: np.abs(v) for k, v in ref.state_dict().items()}  # the MLP on absolute values: its sums' terms
    terms = np.maximum(np.abs(X) @ w["0.weight"].T + w["0.bias"], 0) @ w["2.weight"].T + w["2.bias"]
    assert_sum_close(fastnn.predict(ref, X, distributed=dist), fastnn.predict(ref, X), terms, 12 + 16,
                     err_msg="predict, sharded vs one process")


def check_identical_with_dropout(dist, comm):
    """Adam, float32, local BatchNorm and dropout: the ranks' parameters stay bit-identical."""
    X, y = data(700, dtype=np.float32)
    model = mlp(np.float32, bn=True, dropout=0.3)
    hashes = []
    history = fastnn.fit(model, X, y, optimizer="adam", epochs=3, batch_size=32, seed=3, verbose=0,
                         validation_split=0.2, distributed=dist,
                         callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: hashes.append(digest(model)))])
    same_on_every_rank(comm, hashes, "the parameters after each epoch")
    logs = {k: v for k, v in history.history.items() if k != "seconds"}
    same_on_every_rank(comm, json.dumps(logs, sort_keys=True), "the epoch logs")


def check_dropout_differs(dist, comm):
    """Dropout masks differ between ranks and are reproducible: the same run twice gives the same
    parameters, and with the same samples on both ranks the averaged gradient is not rank 0's own
    (which it would be, exactly, if rank 1 drew rank 0's masks)."""
    X, y = data(256, dtype=np.float32)
    runs = []
    for _ in range(2):
        model = mlp(np.float32, dropout=0.5)
        fastnn.fit(model, X, y, optimizer="sgd", epochs=1, batch_size=64, seed=5, verbose=0, distributed=dist)
        runs.append(model.flat_parameters().copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    twice_x, twice_y = np.concatenate([X[:128], X[:128]]), np.concatenate([y[:128], y[:128]])
    model = mlp(np.float32, dropout=0.5)
    fastnn.fit(model, twice_x, twice_y, optimizer=optim.SGD(model.parameters(), lr=0.0), epochs=1, batch_size=128,
               shuffle=False, seed=5, verbose=0, distributed=dist)
    local = mlp(np.float32, dropout=0.5)
    fastnn.fit(local, X[:128], y[:128], optimizer=optim.SGD(local.parameters(), lr=0.0), epochs=1, batch_size=128,
               shuffle=False, seed=5, verbose=0)
    assert not np.array_equal(model.flat_grad(), local.flat_grad()), "both ranks drew the same dropout masks"


def check_callbacks_see_reduced_values(dist, comm):
    """Callbacks act on the reduced logs: with validation data, every rank's EarlyStopping stops at
    the epoch where one process (batch 128 = 2 x 64) stops, and the val_loss each callback saw is
    the one process's, not the rank's own share's (which differ: a check that can fail)."""
    X, _ = data(640)
    Xv, _ = data(301, seed=4)
    W = np.random.default_rng(5).standard_normal((12, 5))
    y, yv = np.argmax(X @ W, axis=1), np.argmax(Xv @ W, axis=1)  # learnable: val_loss falls, by less each epoch
    lr, epochs = 0.05, 8

    def run(distributed, batch_size, stopper=None):
        model, seen = mlp(), []
        callbacks = [LambdaCallback(on_epoch_end=lambda e, logs: seen.append(logs["val_loss"]))]
        fastnn.fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=lr), epochs=epochs, batch_size=batch_size,
                   seed=13, verbose=0, validation_data=(Xv, yv), distributed=distributed,
                   callbacks=callbacks + ([stopper] if stopper else []))
        return model, seen
    _, full = run(None, 128)
    gains = sorted(a - b for a, b in zip(full, full[1:]))
    assert gains[0] > 0, full
    # stop where the improvement first falls below the median one: an epoch that the values decide
    min_delta = (gains[len(gains) // 2] + gains[len(gains) // 2 - 1]) / 2
    ref_stop, stop = EarlyStopping(monitor="val_loss", min_delta=min_delta), EarlyStopping(monitor="val_loss",
                                                                                          min_delta=min_delta)
    _, want = run(None, 128, ref_stop)
    model, got = run(dist, 64, stop)
    assert ref_stop.stopped_epoch is not None and ref_stop.stopped_epoch < epochs - 1, (full, min_delta)
    assert stop.stopped_epoch == ref_stop.stopped_epoch, (stop.stopped_epoch, ref_stop.stopped_epoch, got, want)
    same_on_every_rank(comm, got, "the val_loss the callbacks saw")
    for a, b in zip(got, want):
        assert abs(a - b) <= 1e-9 * b, (got, want)
    own = fastnn.evaluate(model, Xv[dist.rows(len(Xv))], yv[dist.rows(len(Xv))])["loss"]
    assert abs(own - got[-1]) > 1e-6 * got[-1], (own, got[-1])


def check_sync_batchnorm(dist, comm, image, n=520, drop_last=False):
    """sync_batchnorm: 2 ranks x 64 train as one process x 128 with plain BatchNorm (float64, SGD),
    running statistics included (also with drop_last)."""
    X, y = data(n, image=image)
    build = cnn if image else (lambda: mlp(bn=True))
    ref = build()
    fastnn.fit(ref, X, y, optimizer=optim.SGD(ref.parameters(), lr=0.05), epochs=2, batch_size=128, seed=9,
               verbose=0, drop_last=drop_last)
    model = build()
    sync = type(dist)(sync_batchnorm=True, timeout=dist.channel.timeout)
    opt = optim.SGD(model.parameters(), lr=0.05)
    fastnn.fit(model, X, y, optimizer=opt, epochs=2, batch_size=64, seed=9, verbose=0, distributed=sync,
               drop_last=drop_last)
    assert any(type(m).__name__ == "SyncBatchNorm" for m in model.modules())
    same_on_every_rank(comm, digest(model), "the parameters")
    got, want = model.state_dict(), ref.state_dict()
    assert list(got) == list(want), (list(got), list(want))
    steps = 2 * (n // 128 if drop_last else -(-n // 128))
    for k in want:
        # a BatchNorm's statistics and its gradients are sums over the whole batch (n * H * W values)
        terms = np.abs(want[k]) + 1.0
        assert_sum_close(got[k], want[k], terms, 128 * 36 * steps, c=100.0, err_msg=k)
    # local statistics differ from the global batch's (the default): a check that can fail
    plain = build()
    fastnn.fit(plain, X, y, optimizer=optim.SGD(plain.parameters(), lr=0.05), epochs=2, batch_size=64, seed=9,
               verbose=0, distributed=dist, drop_last=drop_last)
    key = [k for k in want if k.endswith("running_mean")][0]
    assert np.abs(plain.state_dict()[key] - want[key]).max() > 1e-6


def check_batch_sizes(dist, comm):
    """fit refuses exactly the batches that cannot train, before any step, on every rank: with
    sync_batchnorm, 257 samples by 64 x 2 ranks (a last global batch of 1: rank 1's shard empty)
    name a batch size that works, and drop_last=True, which drops that batch, trains (as one process
    x 128 does: check_sync_batchnorm), as does a frozen eval-mode SyncBatchNorm (no collectives); on a
    1-rank communicator a last batch of 1 sample is refused (1 value per channel); with local BatchNorm a rank's 1-sample shard is refused (130 =
    2 x 64 + 1 + 1) but 193 = 2 x 64 + 33 + 32 trains, which one process's 193 by 64 would refuse."""
    X, y = data(257)
    sync = type(dist)(sync_batchnorm=True, timeout=dist.channel.timeout)
    model = mlp(bn=True)
    before = digest(model)
    try:
        fastnn.fit(model, X, y, optimizer="sgd", epochs=1, batch_size=64, verbose=0, distributed=sync)
    except ValueError as e:
        text = str(e)
        assert "last global batch of 257 samples by 64 x 2 ranks has 1" in text and "drop_last=True" in text, text
        good = int(re.search(r"batch_size=(\d+)", text).group(1))
    else:
        raise AssertionError("no error for a last global batch of 1 sample with sync_batchnorm")
    assert digest(model) == before, "the refused fit changed the model"
    fastnn.fit(model, X, y, optimizer="sgd", epochs=1, batch_size=good, verbose=0, distributed=sync)  # it works
    check_sync_batchnorm(dist, comm, image=False, n=257, drop_last=True)
    frozen = mlp(bn=True)
    frozen[1].requires_grad_(False).eval()  # fit keeps it in eval mode: no collectives, so no refusal
    fastnn.fit(frozen, X, y, optimizer="sgd", epochs=1, batch_size=64, verbose=0, distributed=sync)
    alone = type(dist)(comm=comm.Split(dist.rank), sync_batchnorm=True, timeout=dist.channel.timeout)
    try:  # one rank: a last batch of 1 sample is 1 value per channel
        fastnn.fit(mlp(bn=True), X[:129], y[:129], optimizer="sgd", epochs=1, batch_size=128, verbose=0,
                   distributed=alone)
    except ValueError as e:
        assert "needs more than 1 value per channel" in str(e) and "batch_size=" in str(e), str(e)
    else:
        raise AssertionError("no error for a 1-sample batch with sync_batchnorm on one rank")
    for n, refused in ((130, True), (193, False)):
        X, y = data(n)
        model = mlp(bn=True)
        try:
            fastnn.fit(model, X, y, optimizer="sgd", epochs=1, batch_size=64, verbose=0, distributed=dist)
        except ValueError as e:
            assert refused and "by 64 x 2 processes gives a process 1 sample" in str(e), (n, str(e))
            assert digest(model) == digest(mlp(bn=True)), "the refused fit changed the model"
        else:
            assert not refused, f"no error for {n} samples by 64 x 2 ranks with local BatchNorm"


def check_mismatch(dist, comm):
    width = 16 if dist.rank == 0 else 17
    model = nn.Sequential(nn.Linear(12, width), nn.ReLU(), nn.Linear(width, 5))
    try:
        fastnn.distributed.broadcast_parameters(model, distributed=dist)
    except ValueError as e:
        text = str(e)
        assert "rank 0: 293" in text and "rank 1: 311" in text and "parameters" in text, text
    else:
        raise AssertionError("no error for models of 293 and 311 parameters")


CKPT = dict(n=600, batch_size=50, lr=0.05, momentum=0.9, seed=11)


def check_checkpoint(dist, comm, folder):
    """Rank 0 alone writes the checkpoints and the CSV log (and prints the epoch lines); resuming
    from the epoch-1 checkpoint on 2 ranks gives the uninterrupted run's parameters, bit for bit."""
    X, y = data(CKPT["n"])
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=CKPT["lr"], momentum=CKPT["momentum"])
    path = os.path.join(folder, "ckpt-{epoch}.fnn")
    log = os.path.join(folder, f"log-{dist.rank}.csv")
    fastnn.fit(model, X, y, optimizer=opt, epochs=2, batch_size=CKPT["batch_size"], seed=CKPT["seed"], verbose=2,
               distributed=dist, callbacks=[ModelCheckpoint(path, monitor="loss"), CSVLogger(log)])
    comm.Barrier()
    assert os.path.exists(os.path.join(folder, "ckpt-1.fnn")) and os.path.exists(os.path.join(folder, "log-0.csv"))
    assert not os.path.exists(os.path.join(folder, "log-1.csv")), "rank 1 wrote its CSV log"
    if dist.rank == 0:
        np.save(os.path.join(folder, "final.npy"), model.flat_parameters())
    resumed, opt, extra = fastnn.load(os.path.join(folder, "ckpt-1.fnn"), with_optimizer=True)
    fastnn.fit(resumed, X, y, optimizer=opt, epochs=2, initial_epoch=extra["epoch"], batch_size=CKPT["batch_size"],
               seed=CKPT["seed"], verbose=0, distributed=dist)
    np.testing.assert_array_equal(resumed.flat_parameters(), model.flat_parameters())


def main(folder):
    import fastnn.distributed as dist_mod

    comm = dist_mod.init()
    rank = dist_mod.rank()
    dist = dist_mod.DataParallel(timeout=60)
    report(rank, "world", lambda: (dist_mod.world_size() == 2) or (_ for _ in ()).throw(AssertionError("size")))
    report(rank, "threads", lambda: check_threads(dist_mod, comm))
    report(rank, "equivalence", lambda: check_equivalence(dist, comm, 1001, 2))
    report(rank, "empty_shard", lambda: check_equivalence(dist, comm, 129, 2))
    report(rank, "identical", lambda: check_identical_with_dropout(dist, comm))
    report(rank, "dropout", lambda: check_dropout_differs(dist, comm))
    report(rank, "callbacks", lambda: check_callbacks_see_reduced_values(dist, comm))
    report(rank, "sync_bn_mlp", lambda: check_sync_batchnorm(dist, comm, image=False))
    report(rank, "sync_bn_cnn", lambda: check_sync_batchnorm(dist, comm, image=True))
    report(rank, "batch_sizes", lambda: check_batch_sizes(dist, comm))
    report(rank, "mismatch", lambda: check_mismatch(dist, comm))
    report(rank, "checkpoint", lambda: check_checkpoint(dist, comm, folder))


def resume1(folder):
    """One process (no MPI) resumes the 2-rank run's epoch-1 checkpoint with batch 100 = 2 x 50 and
    ends where the 2-rank run ended, up to the rounding of the batch sums."""
    X, y = data(CKPT["n"])
    model, opt, extra = fastnn.load(os.path.join(folder, "ckpt-1.fnn"), with_optimizer=True)
    start = fastnn.load(os.path.join(folder, "ckpt-1.fnn"))
    fastnn.fit(model, X, y, optimizer=opt, epochs=2, initial_epoch=extra["epoch"], batch_size=2 * CKPT["batch_size"],
               seed=CKPT["seed"], verbose=0)
    final = np.load(os.path.join(folder, "final.npy"))
    steps = -(-CKPT["n"] // (2 * CKPT["batch_size"]))

    def check():
        assert extra["epoch"] == 1 and int(opt.state["step"][0]) == 2 * steps, (extra, opt.state["step"])
        terms = trajectory_terms(start, model, X, y, CKPT["lr"], steps, 2 * CKPT["batch_size"], CKPT["momentum"])
        assert_sum_close(model.flat_parameters(), final, terms, 2 * CKPT["batch_size"] * steps,
                         err_msg="resumed on 1 process vs on 2 ranks")
    report(0, "resume1", check)


class Fails(nn.Module):
    """Raises in forward at the given batch of training on one rank (or stalls there)."""

    def __init__(self, at, stall=0.0):
        super().__init__()
        self.at, self.stall, self.calls = at, stall, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            if self.stall:
                time.sleep(self.stall)
            else:
                raise ValueError(f"boom at call {self.at}")
        return x

    def backward(self, g):
        return g


def faulty(stall):
    import fastnn.distributed as dist_mod

    dist_mod.init()
    rank = dist_mod.rank()
    dist = dist_mod.DataParallel(timeout=4)
    X, y = data(2000, dtype=np.float32)
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), Fails(at=6 if rank == 1 else 0, stall=stall), nn.Linear(8, 5))
    start = time.monotonic()
    try:
        fastnn.fit(model, X, y, epochs=3, batch_size=20, verbose=0, distributed=dist)
    except Exception as e:
        emit(rank, f"RAISED {rank} {time.monotonic() - start:.2f} {type(e).__name__}: {str(e)[:300]!r}")
    else:
        emit(rank, f"RAISED {rank} none")
    if stall:  # rank 0 timed out: its exit aborts the job (and the stalled rank with it)
        sys.exit(0)


if __name__ == "__main__":
    scenario, folder = sys.argv[1], sys.argv[2]
    {"main": main, "resume1": resume1, "raising": lambda f: faulty(0.0), "stuck": lambda f: faulty(30.0)}[scenario](
        folder)
