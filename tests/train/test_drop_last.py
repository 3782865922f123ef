"""fit(drop_last=True), as torch's DataLoader(drop_last=True): each epoch's incomplete last batch
is skipped (the C++ loop's EpochOptions.drop_last), in the first-order loop, the full-batch
branch's minibatches and the data-parallel shards; validation, evaluate and predict use every
sample."""

import numpy as np
import pytest

import fastnn
from fastnn import augment, nn, optim
from fastnn._config import _C
from fastnn.train import Callback
from fastnn.train.parallel import SingleProcess
from tests.train.cases import assert_state_equal, blobs, epoch_order, mlp, state_differs


class StepsPerEpoch(Callback):
    def __init__(self):
        self.steps = []

    def on_epoch_end(self, epoch, logs=None):
        self.steps.append(self.fit_state.global_step)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shuffled_epochs_train_on_the_full_batches_of_their_order(dtype):
    """Bit for bit train_step on order[:k * batch] of each epoch's documented permutation: the
    dropped samples change from epoch to epoch; the loss and accuracy are over the trained ones."""
    X, y = blobs(50, dtype=dtype)
    seed, bs = 3, 8
    a, b = mlp(dtype=dtype), mlp(dtype=dtype)
    opt_a, opt_b = optim.SGD(a.parameters(), lr=0.1, momentum=0.9), optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    steps = StepsPerEpoch()
    history = fastnn.fit(a, X, y, optimizer=opt_a, epochs=2, batch_size=bs, seed=seed, verbose=0, drop_last=True,
                         callbacks=[steps])
    assert steps.steps == [6, 12]  # 50 // 8 batches per epoch, not 7
    step, dropped = 0, []
    for epoch in range(2):
        order = epoch_order(len(X), seed, epoch)
        dropped.append(set(order[48:]))
        losses = []
        for s in range(0, 48, bs):
            idx = order[s:s + bs]
            losses.append(fastnn.train_step(b, X[idx], y[idx], nn.CrossEntropyLoss(), opt_b, seed=seed, step=step))
            step += 1
        assert history["loss"][epoch] == pytest.approx(np.mean(losses), rel=1e-6 if dtype == np.float32 else 1e-13)
        assert (history["accuracy"][epoch] * 48) == pytest.approx(round(history["accuracy"][epoch] * 48))
    assert dropped[0] != dropped[1]
    assert_state_equal(a, b)
    kept = mlp(dtype=dtype)  # drop_last=False (the default) also trains the last 2 samples
    fastnn.fit(kept, X, y, optimizer=optim.SGD(kept.parameters(), lr=0.1, momentum=0.9), epochs=2, batch_size=bs,
               seed=seed, verbose=0)
    assert state_differs(a.state_dict(), kept.state_dict())


def test_with_augment_weights_and_validation_it_equals_fitting_the_full_batches_alone():
    """shuffle=False: fit on 30 samples by 8 with drop_last is fit on the first 24 (augmented from
    the same (seed, step) draws, weighted alike); validation and evaluate see every sample."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=30)
    w = rng.uniform(0.5, 2.0, size=30)
    Xv, yv = X[:11] + 0.5, y[:11]

    def model():
        fastnn.manual_seed(4)
        return nn.Sequential(nn.Flatten(), nn.Linear(36, 3))

    aug = augment.Compose([augment.RandomShift(1), augment.RandomHorizontalFlip()])
    kwargs = dict(optimizer="adam", epochs=3, batch_size=8, shuffle=False, seed=9, verbose=0, augment=aug,
                  class_weight={0: 2.0, 2: 0.5}, validation_data=(Xv, yv))
    a, b = model(), model()
    ha = fastnn.fit(a, X, y, sample_weight=w, drop_last=True, **kwargs)
    hb = fastnn.fit(b, X[:24], y[:24], sample_weight=w[:24], **kwargs)
    assert_state_equal(a, b)
    assert ha["loss"] == hb["loss"]
    assert ha["val_loss"][-1] == pytest.approx(fastnn.evaluate(a, Xv, yv)["loss"], rel=1e-6)  # all 11 samples
    assert fastnn.predict(a, X).shape == (30, 3)


def test_nothing_is_dropped_when_the_batches_are_full_or_one_batch_holds_all():
    X, y = blobs(40)
    for bs in (8, 40, 1000):  # 40 = 5 x 8; a batch_size larger than the data is one batch of all of it (Keras)
        a, b = mlp(), mlp()
        fastnn.fit(a, X, y, optimizer=optim.SGD(a.parameters(), lr=0.1), batch_size=bs, seed=0, verbose=0,
                   drop_last=True)
        fastnn.fit(b, X, y, optimizer=optim.SGD(b.parameters(), lr=0.1), batch_size=bs, seed=0, verbose=0)
        assert_state_equal(a, b)


def test_a_one_sample_last_batch_with_batchnorm_is_dropped_instead_of_refused():
    X, y = blobs(33)
    with pytest.raises(ValueError, match="last batch of 33 samples by 8 has 1 sample.*drop_last=True"):
        fastnn.fit(mlp(batchnorm=True), X, y, batch_size=8, verbose=0)
    history = fastnn.fit(mlp(batchnorm=True), X, y, batch_size=8, verbose=0, drop_last=True, epochs=2)
    assert np.isfinite(history["loss"]).all()
    with pytest.raises(ValueError, match="use batch_size >= 2"):  # batch_size 1 still is
        fastnn.fit(mlp(batchnorm=True), X, y, batch_size=1, verbose=0, drop_last=True)


def test_full_batch_optimizers_drop_the_last_minibatch_too():
    X, y = blobs(20, dtype=np.float64)
    for drop_last, per_epoch in ((False, 3), (True, 2)):
        model = mlp(dtype=np.float64)
        steps = StepsPerEpoch()
        fastnn.fit(model, X, y, optimizer=optim.LBFGS(model.parameters(), max_iter=2), batch_size=8, epochs=2,
                   seed=0, verbose=0, drop_last=drop_last, callbacks=[steps])
        assert steps.steps == [per_epoch, 2 * per_epoch]


@pytest.mark.parametrize("value", [1, 0, "yes", None, np.array([True])])
def test_drop_last_must_be_a_bool(value):
    X, y = blobs(20)
    with pytest.raises(TypeError, match="fit: drop_last must be True or False"):
        fastnn.fit(mlp(), X, y, drop_last=value, verbose=0)
    fastnn.fit(mlp(), X, y, drop_last=np.bool_(True), verbose=0, batch_size=8)  # numpy's bool is one


def test_plans_count_full_global_batches_and_the_shards_see_only_those():
    """The steps a plan counts (train/parallel.py batches) and what the C++ loop gives each shard
    of a data-parallel job (global batch = batch_size x shards): with drop_last, the full global
    batches of the shared order only, every shard batch_size samples."""

    class TwoRanks(SingleProcess):
        size = 2

    assert [SingleProcess().batches(n, 4, d) for n in (8, 10) for d in (False, True)] == [2, 2, 3, 2]
    assert [TwoRanks().batches(n, 4, d) for n in (16, 20, 7) for d in (False, True)] == [2, 2, 3, 2, 1, 0]
    X, y = blobs(21)
    seen = {}
    for shard in (0, 1):
        for drop_last in (False, True):
            model = mlp()
            grads = model.flat_grad()
            calls = []

            def hook(batch, count, loss, *sums):  # stands in for DataParallel's gradient average
                calls.append((batch, count))
                return loss

            _C.train_epoch(model._layer, X, y, "cross_entropy", "mean", grads, [], 4, True, 0, 0, 0,
                           shard=shard, shards=2, grad_hook=hook, drop_last=drop_last)
            seen[shard, drop_last] = calls
    # 21 samples by 4 x 2: two full global batches, then one of 5 split 3 + 2 unless dropped
    assert seen[0, False] == [(0, 4), (1, 4), (2, 3)] and seen[1, False] == [(0, 4), (1, 4), (2, 2)]
    assert seen[0, True] == seen[1, True] == [(0, 4), (1, 4)]


def test_cli_and_sklearn_pass_it_to_fit(monkeypatch):
    from fastnn.__main__ import main

    seen = []
    real_fit = fastnn.fit
    monkeypatch.setattr(fastnn, "fit", lambda *a, **k: seen.append(k["drop_last"]) or real_fit(*a, **k))
    for flag in ([], ["--drop-last"]):
        assert main(["train", "--model", "linear", "--epochs", "1", "--train-size", "100", "--batch-size", "32",
                     "--data", "bundled", "--quiet", *flag]) == 0
    assert seen == [False, True]

    pytest.importorskip("sklearn")
    import fastnn.sklearn as sk

    seen.clear()
    monkeypatch.setattr(sk, "_fit", lambda *a, **k: seen.append(k["drop_last"]) or real_fit(*a, **k))
    X, y = blobs(50)
    assert sk.NeuralNetClassifier().get_params()["drop_last"] is False
    for drop_last in (False, True):
        sk.NeuralNetClassifier(hidden_layer_sizes=(8,), epochs=2, batch_size=8, random_state=0,
                               drop_last=drop_last).fit(X, y)
        sk.NeuralNetRegressor(hidden_layer_sizes=(8,), epochs=1, random_state=0, drop_last=drop_last).partial_fit(
            X, X[:, :2])
    assert seen == [False, False, True, True]
    with pytest.raises(TypeError, match="drop_last must be True or False"):
        sk.NeuralNetClassifier(drop_last="yes").fit(X, y)
