"""fit / evaluate / predict / train_step: the C++ epoch loop against the Python-level API, on
synthetic data and a Fashion-MNIST subset; reproducibility; every bad input is a clear error."""

import math
import os
import re

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn.train import Callback, LambdaCallback, TerminateOnNaN
from tests.conftest import assert_sum_close, network_terms, num_threads, requires_torch
from tests.train.cases import (CLASSES, FEATURES, assert_state_equal, blobs, epoch_order, fashion_subset, metrics,
                               mlp, state_differs)

HISTORY_KEYS = {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}


# --- real data --------------------------------------------------------------------------------


def test_fit_decreases_loss_on_fashion_mnist():
    X, y, Xt, yt = fashion_subset(3000)
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    history = fastnn.fit(model, X, y, optimizer=opt, epochs=3, batch_size=64, validation_data=(Xt, yt), seed=0,
                         verbose=0)

    assert set(history.history) == HISTORY_KEYS
    assert history.epoch == [0, 1, 2] and len(history) == 3
    assert all(len(v) == 3 for v in history.history.values())
    loss = history["loss"]
    assert loss[0] < math.log(10)  # better than chance already during the first epoch
    assert loss[0] > loss[1] > loss[2]
    assert history["val_loss"][2] < history["val_loss"][0]
    assert history["val_accuracy"][2] > 0.75
    assert all(0 <= a <= 1 for a in history["accuracy"] + history["val_accuracy"])
    assert history["lr"] == [1e-3] * 3
    assert all(s > 0 for s in history["seconds"])
    # the validation metrics are those of evaluate() on the final model, in eval mode
    final = fastnn.evaluate(model, Xt, yt)
    assert final["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-12)
    assert final["accuracy"] == history["val_accuracy"][-1]
    assert opt.state["step"][0] == 3 * math.ceil(3000 / 64)


def test_metrics_are_those_of_the_model_at_each_epoch_start():
    """Batch gradient descent: the epoch's loss/accuracy are those of the parameters it started with."""
    X, y = blobs(120, dtype=np.float64)
    model = mlp(dtype=np.float64)
    seen = []
    record = LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(fastnn.evaluate(model, X, y)))
    history = fastnn.fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=0.5), epochs=4, batch_size=len(X),
                         callbacks=[record], verbose=0)
    np.testing.assert_allclose(history["loss"], [s["loss"] for s in seen], rtol=1e-12)
    assert history["accuracy"] == [s["accuracy"] for s in seen]


def test_full_batch_gradient_descent_decreases_a_convex_loss_every_epoch():
    X, y = blobs(200, dtype=np.float64)
    fastnn.manual_seed(3)
    model = nn.Sequential(nn.Linear(FEATURES, CLASSES, dtype=np.float64))  # softmax regression: convex
    opt = optim.SGD(model.parameters(), lr=0.5)
    history = fastnn.fit(model, X, y, optimizer=opt, epochs=15, batch_size=len(X), verbose=0)
    assert np.all(np.diff(history["loss"]) < 0)
    assert opt.state["step"][0] == 15  # one step per epoch


def test_single_sample_sgd():
    X, y = blobs(48)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.05)
    history = fastnn.fit(model, X, y, optimizer=opt, epochs=4, batch_size=1, seed=1, verbose=0)
    assert opt.state["step"][0] == 4 * 48
    assert history["loss"][-1] < 0.7 * history["loss"][0]


def test_validation_split_is_the_last_fraction_before_shuffling():
    X, y = blobs(200)
    a, b = mlp(dropout=0.2), mlp(dropout=0.2)
    kw = dict(epochs=3, batch_size=16, seed=4, verbose=0)
    h_split = fastnn.fit(a, X, y, optimizer=optim.Adam(a.parameters()), validation_split=0.25, **kw)
    h_explicit = fastnn.fit(b, X[:150], y[:150], optimizer=optim.Adam(b.parameters()),
                            validation_data=(X[150:], y[150:]), **kw)
    assert metrics(h_split) == metrics(h_explicit)
    assert_state_equal(a, b)


def test_model_fit_is_fastnn_fit():
    X, y = blobs()
    a, b = mlp(), mlp()
    h_a = fastnn.fit(a, X, y, optimizer=optim.Adam(a.parameters()), epochs=2, seed=0, verbose=0)
    h_b = b.fit(X, y, optimizer=optim.Adam(b.parameters()), epochs=2, seed=0, verbose=0)
    assert metrics(h_a) == metrics(h_b)
    assert_state_equal(a, b)


def test_optimizer_by_name_with_lr():
    X, y = blobs()
    model = mlp()
    history = fastnn.fit(model, X, y, optimizer="sgd", lr=0.05, epochs=2, verbose=0)
    assert history["lr"] == [0.05, 0.05]


def test_an_optimizer_by_name_keeps_its_state_across_fit_calls():
    """Keras semantics: two fit calls of one epoch train like one call of two epochs."""
    X, y = blobs()
    a, b = mlp(), mlp()
    for epoch in range(2):
        fastnn.fit(a, X, y, optimizer="adam", lr=0.01, epochs=epoch + 1, initial_epoch=epoch, seed=3, verbose=0)
    fastnn.fit(b, X, y, optimizer="adam", lr=0.01, epochs=2, seed=3, verbose=0)
    assert_state_equal(a, b)
    kept = a._fit_optimizer[1]
    fastnn.fit(a, X, y, optimizer="adam", lr=0.02, epochs=1, verbose=0)  # another lr: a fresh optimizer
    assert a._fit_optimizer[0] == ("adam", 0.02) and a._fit_optimizer[1] is not kept


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_verbose_output(verbose, capsys):
    X, y = blobs(64)
    fastnn.fit(mlp(), X, y, epochs=2, batch_size=16, verbose=verbose)
    out, err = capsys.readouterr()
    text = out + err
    if verbose == 0:
        assert text == ""
    else:
        assert "epoch 2/2" in text and "loss" in text


def test_predict_and_evaluate_run_in_eval_mode():
    X, y = blobs(100)
    model = mlp(batchnorm=True, dropout=0.5)
    fastnn.fit(model, X, y, epochs=2, batch_size=16, verbose=0)
    model.eval()
    expected = model(X)
    terms, k = network_terms(model, X)
    for batch_size in (1, 7, 256):  # GEMM blocking depends on the batch: float32 rounding differs
        assert_sum_close(fastnn.predict(model, X, batch_size=batch_size), expected, terms, k)
    model.train()  # predict ignores the module's mode: dropout off, running statistics
    assert_sum_close(model.predict(X), expected, terms, k)
    result = fastnn.evaluate(model, X, y)
    assert result["accuracy"] == np.mean(np.argmax(expected, axis=1) == y)
    logits = expected.astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert result["loss"] == pytest.approx(-logp[np.arange(len(y)), y].mean(), rel=1e-5)


# --- the C++ loop against the Python-level API ------------------------------------------------


def _targets(loss, y, n_classes=CLASSES):
    if loss == "cross_entropy":
        return y
    onehot = nn.one_hot(y, n_classes, dtype=np.float64)
    return onehot if loss == "bce_with_logits" else 2 * onehot - 1


_LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce_with_logits": nn.BCEWithLogitsLoss}
_OPTIMIZERS = {
    "sgd": lambda p: optim.SGD(p, lr=0.1),
    "sgd_momentum_decay": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: optim.Adam(p, lr=1e-2),
    "adamw_amsgrad": lambda p: optim.AdamW(p, lr=1e-2, amsgrad=True),
    "rmsprop": lambda p: optim.RMSprop(p, lr=1e-3, momentum=0.5),
    "adagrad": lambda p: optim.Adagrad(p, lr=0.1),
}


def _hand_loop(model, opt, X, y, loss_fn, epochs, batch_size, clip_norm=None, clip_value=None):
    """The textbook loop written with the Python-level API; returns the per-epoch mean losses."""
    losses = []
    model.train()
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(X), batch_size):
            xb, yb = X[start:start + batch_size], y[start:start + batch_size]
            opt.zero_grad()
            out = model(xb)
            total += loss_fn(out, yb) * len(xb)
            model.backward(loss_fn.backward())
            if clip_norm:
                optim.clip_grad_norm_(model.parameters(), clip_norm)
            if clip_value:
                optim.clip_grad_value_(model.parameters(), clip_value)
            opt.step()
        losses.append(total / len(X))
    return losses


@pytest.mark.parametrize("opt_name", list(_OPTIMIZERS))
@pytest.mark.parametrize("loss", list(_LOSSES))
def test_fit_matches_a_hand_written_loop(loss, opt_name):
    X, y = blobs(100, dtype=np.float64)
    t = _targets(loss, y)
    a = mlp(batchnorm=True, dtype=np.float64)
    b = mlp(batchnorm=True, dtype=np.float64)
    opt_a, opt_b = _OPTIMIZERS[opt_name](a.parameters()), _OPTIMIZERS[opt_name](b.parameters())
    history = fastnn.fit(a, X, t, loss=_LOSSES[loss](), optimizer=opt_a, epochs=2, batch_size=16, shuffle=False,
                         verbose=0)
    losses = _hand_loop(b, opt_b, X, t, _LOSSES[loss](), epochs=2, batch_size=16)
    assert_state_equal(a, b, exact=False, rtol=1e-10, atol=1e-12)  # BN running statistics included
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-12)
    np.testing.assert_array_equal(opt_a.state["step"], opt_b.state["step"])
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sorted(sa) == sorted(sb)
    for key in sa:
        np.testing.assert_allclose(sa[key], sb[key], rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("batch_size", [1, 7, 100])
@pytest.mark.parametrize("clip", [None, "norm", "value"])
def test_fit_matches_a_hand_written_loop_batch_sizes_and_clipping(batch_size, clip):
    X, y = blobs(100, dtype=np.float64)
    a, b = mlp(dtype=np.float64), mlp(dtype=np.float64)
    opt_a = optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    clip_kw = {"norm": dict(clip_norm=0.05), "value": dict(clip_value=0.01)}.get(clip, {})
    fit_kw = {"clip_grad_norm": clip_kw.get("clip_norm"), "clip_grad_value": clip_kw.get("clip_value")}
    history = fastnn.fit(a, X, y, optimizer=opt_a, epochs=2, batch_size=batch_size, shuffle=False, verbose=0,
                         **fit_kw)
    losses = _hand_loop(b, opt_b, X, y, nn.CrossEntropyLoss(), epochs=2, batch_size=batch_size, **clip_kw)
    assert_state_equal(a, b, exact=False, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-12)
    if clip:  # clipping must have changed the trajectory, or this test proves nothing about it
        c = mlp(dtype=np.float64)
        fastnn.fit(c, X, y, optimizer=optim.SGD(c.parameters(), lr=0.1, momentum=0.9), epochs=2,
                   batch_size=batch_size, shuffle=False, verbose=0)
        assert state_differs(a.state_dict(), c.state_dict())


def _frozen_prelu_bn(dtype):
    fastnn.manual_seed(3)
    model = nn.Sequential(nn.Linear(FEATURES, 16, dtype=dtype), nn.PReLU(16, dtype=dtype),
                          nn.BatchNorm1d(16, dtype=dtype), nn.ReLU(), nn.Linear(16, CLASSES, dtype=dtype))
    model[0].requires_grad_(False)
    return model


def test_fit_writes_every_trainable_gradient_and_leaves_frozen_ones_zero():
    """The epoch loop writes parameter gradients instead of zeroing and accumulating: every
    trainable one (Linear, PReLU, BatchNorm) must be written each batch, frozen ones stay zero."""
    X, y = blobs(60, dtype=np.float64)
    a, b = _frozen_prelu_bn(np.float64), _frozen_prelu_bn(np.float64)
    for m in (a, b):
        m.flat_grad()[:] = 123.0  # stale gradients (e.g. of a layer trained before it was frozen)
    opt_a = optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    opt_b = optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    fastnn.fit(a, X, y, optimizer=opt_a, epochs=2, batch_size=16, shuffle=False, verbose=0)
    _hand_loop(b, opt_b, X, y, nn.CrossEntropyLoss(), epochs=2, batch_size=16)
    assert_state_equal(a, b, exact=False, rtol=1e-10, atol=1e-12)
    trainable = np.concatenate([p.grad.ravel() for p in a.parameters() if p.requires_grad])
    expected = np.concatenate([p.grad.ravel() for p in b.parameters() if p.requires_grad])
    np.testing.assert_allclose(trainable, expected, rtol=1e-10, atol=1e-12)  # the last batch's gradient
    assert not np.any(trainable == 123.0)
    assert np.all(a[0].weight.grad == 0) and np.all(a[0].bias.grad == 0)
    np.testing.assert_array_equal(np.asarray(a[0].weight), np.asarray(b[0].weight))


class _Residual(nn.Module):
    """A block written in Python around a fastnn Linear: x + lin(x)."""

    def __init__(self, width, dtype):
        super().__init__()
        self.lin = nn.Linear(width, width, dtype=dtype)

    def forward(self, x):
        return x + self.lin(x)

    def backward(self, g):
        return g + self.lin.backward(g)


def test_fit_zeroes_gradients_that_a_python_module_accumulates():
    """The loop writes gradients instead of zeroing them only when every layer writes its own; a
    Python module's fastnn submodules add to theirs, so the flat gradient is zeroed per batch."""
    X, y = blobs(60, dtype=np.float64)

    def make():
        fastnn.manual_seed(4)
        return nn.Sequential(nn.Linear(FEATURES, 8, dtype=np.float64), nn.Tanh(), _Residual(8, np.float64),
                             nn.Linear(8, CLASSES, dtype=np.float64))

    a, b = make(), make()
    opt_a, opt_b = optim.SGD(a.parameters(), lr=0.05), optim.SGD(b.parameters(), lr=0.05)
    fastnn.fit(a, X, y, optimizer=opt_a, epochs=2, batch_size=16, shuffle=False, verbose=0)
    _hand_loop(b, opt_b, X, y, nn.CrossEntropyLoss(), epochs=2, batch_size=16)
    assert_state_equal(a, b, exact=False, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", [1, 13, 64])
def test_a_first_layer_reading_rows_in_place_trains_as_on_a_copied_batch(dtype, batch_size):
    """A narrow first Linear reads the shuffled samples where they lie (no gather copy); behind an
    Identity the loop copies the batch first. Same kernels, same order: the same bits."""
    X, y = blobs(150, dtype=dtype)
    fastnn.manual_seed(5)
    a = nn.Sequential(nn.Linear(FEATURES, 24, dtype=dtype), nn.ReLU(), nn.Linear(24, CLASSES, dtype=dtype))
    b = nn.Sequential(nn.Identity(), *[fresh for fresh in (nn.Linear(FEATURES, 24, dtype=dtype), nn.ReLU(),
                                                             nn.Linear(24, CLASSES, dtype=dtype))])
    b.load_state_dict({f"{int(k[0]) + 1}{k[1:]}": v for k, v in a.state_dict().items()})
    runs = []
    for m in (a, b):
        h = fastnn.fit(m, X, y, optimizer=optim.Adam(m.parameters(), lr=1e-2), epochs=2, batch_size=batch_size,
                       seed=7, validation_data=(X[:40], y[:40]), verbose=0)
        runs.append((h, m.flat_parameters().copy()))
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0]["loss"] == runs[1][0]["loss"] and runs[0][0]["val_loss"] == runs[1][0]["val_loss"]


@requires_torch
@pytest.mark.parametrize("opt_name", ["nesterov", "adam"])
def test_fit_matches_torch(opt_name):
    """An independent oracle: the same model, data order and optimizer in PyTorch (float64)."""
    import torch

    X, y = blobs(100, dtype=np.float64)
    model = mlp(batchnorm=True, dtype=np.float64)
    net = torch.nn.Sequential(torch.nn.Linear(FEATURES, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                              torch.nn.Linear(16, CLASSES)).double()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=False)
    opt = _OPTIMIZERS[opt_name](model.parameters())
    torch_opt = (torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True) if opt_name == "nesterov"
                 else torch.optim.Adam(net.parameters(), lr=1e-2))
    history = fastnn.fit(model, X, y, optimizer=opt, epochs=2, batch_size=16, shuffle=False, verbose=0)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = []
        for _ in range(2):
            total = 0.0
            for s in range(0, 100, 16):
                torch_opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(X[s:s + 16])),
                                                         torch.from_numpy(y[s:s + 16]))
                loss.backward()
                torch_opt.step()
                total += loss.item() * len(X[s:s + 16])
            losses.append(total / 100)
    finally:
        torch.set_num_threads(old_threads)
    expected = {k: v.numpy() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    # Adam divides by sqrt(v): last-bit differences in tiny gradients grow to ~1e-10 absolute
    assert_state_equal(model.state_dict(), expected, exact=False, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-10)


def test_train_step_matches_fit():
    X, y = blobs(100, dtype=np.float64)
    a, b = mlp(batchnorm=True, dtype=np.float64), mlp(batchnorm=True, dtype=np.float64)
    opt_a, opt_b = optim.Adam(a.parameters(), lr=1e-2), optim.Adam(b.parameters(), lr=1e-2)
    history = fastnn.fit(a, X, y, optimizer=opt_a, epochs=1, batch_size=32, shuffle=False, verbose=0)
    losses = [fastnn.train_step(b, X[s:s + 32], y[s:s + 32], nn.CrossEntropyLoss(), opt_b) for s in range(0, 100, 32)]
    assert_state_equal(a, b)  # the same C++ code in the same order: bit for bit
    sizes = [32, 32, 32, 4]
    assert history["loss"][0] == pytest.approx(np.dot(losses, sizes) / 100, rel=1e-13)


def test_shuffle_changes_the_order_but_not_the_full_batch_gradient():
    X, y = blobs(90, dtype=np.float64)
    models = [mlp(dtype=np.float64) for _ in range(3)]
    for model, shuffle, bs in zip(models, (False, True, True), (90, 90, 10)):
        fastnn.fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=0.1), epochs=3, batch_size=bs,
                   shuffle=shuffle, seed=0, verbose=0)
    assert_state_equal(models[0], models[1], exact=False, rtol=1e-9, atol=1e-12)  # same sum, another order
    assert state_differs(models[0].state_dict(), models[2].state_dict())


@pytest.mark.parametrize("shuffle", [False, True])
def test_shuffle_alone_decides_the_batches(shuffle):
    """Same seed, same batch size: shuffle=False trains on X in order, shuffle=True on the documented
    permutation of each epoch (compared with train_step on those batches, bit for bit)."""
    X, y = blobs(50, dtype=np.float64)
    seed, bs = 5, 8
    a, b = mlp(dtype=np.float64), mlp(dtype=np.float64)
    opt_a, opt_b = optim.SGD(a.parameters(), lr=0.1, momentum=0.9), optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    history = fastnn.fit(a, X, y, optimizer=opt_a, epochs=2, batch_size=bs, shuffle=shuffle, seed=seed, verbose=0)
    step = 0
    for epoch in range(2):
        order = epoch_order(len(X), seed, epoch) if shuffle else np.arange(len(X))
        assert shuffle == (not np.array_equal(order, np.arange(len(X))))
        losses = []
        for s in range(0, len(X), bs):
            idx = order[s:s + bs]
            losses.append(fastnn.train_step(b, X[idx], y[idx], nn.CrossEntropyLoss(), opt_b, seed=seed, step=step))
            step += 1
        sizes = [len(order[s:s + bs]) for s in range(0, len(X), bs)]
        assert history["loss"][epoch] == pytest.approx(np.dot(losses, sizes) / len(X), rel=1e-13)
    assert_state_equal(a, b)
    other = mlp(dtype=np.float64)  # the other setting, all else equal, trains differently
    fastnn.fit(other, X, y, optimizer=optim.SGD(other.parameters(), lr=0.1, momentum=0.9), epochs=2, batch_size=bs,
               shuffle=not shuffle, seed=seed, verbose=0)
    assert state_differs(a.state_dict(), other.state_dict())


# --- reproducibility ----------------------------------------------------------------------------


def _run(seed, data, epochs=2, threads=None):
    X, y = data
    model = mlp(features=X.shape[1], hidden=64, classes=10, batchnorm=True, dropout=0.3)
    opt = optim.Adam(model.parameters())
    if threads is None:
        history = fastnn.fit(model, X, y, optimizer=opt, epochs=epochs, batch_size=64, seed=seed, verbose=0,
                             validation_split=0.1)
    else:
        with num_threads(threads):
            history = fastnn.fit(model, X, y, optimizer=opt, epochs=epochs, batch_size=64, seed=seed, verbose=0,
                                 validation_split=0.1)
    return metrics(history), model.state_dict()


def test_same_seed_same_result_different_seed_different_result():
    X, y, _, _ = fashion_subset(1000)
    h1, s1 = _run(7, (X, y))
    h2, s2 = _run(7, (X, y))
    h3, s3 = _run(8, (X, y))
    assert h1 == h2
    assert_state_equal(s1, s2)
    assert h1["loss"] != h3["loss"]
    assert state_differs(s1, s3)


def test_result_does_not_depend_on_the_thread_count():
    X, y, _, _ = fashion_subset(2000)
    h1, s1 = _run(3, (X, y), threads=1)
    h2, s2 = _run(3, (X, y), threads=2)
    assert h1 == h2
    assert_state_equal(s1, s2)


# --- bad input: clear errors, and the model untouched -------------------------------------------

N = 60


def _bad_cases():
    X, y = blobs(N)
    other = mlp()
    Xnan = X.copy()
    Xnan[7, 3] = np.nan
    Xinf = X.copy()
    Xinf[2, 0] = np.inf
    yout = y.copy()
    yout[5] = 9
    yneg = y.copy()
    yneg[11] = -1
    return {  # name: (fit kwargs, exception, message pattern)
        "wrong feature count": (dict(X=X[:, :-1]), ValueError, rf"\({N}, {FEATURES - 1}\).*\(N, {FEATURES}\)"),
        "label out of range": (dict(y=yout), ValueError, r"y\[5\] = 9 .*\[0, 4\)"),
        "negative label": (dict(y=yneg), ValueError, r"y\[11\] = -1"),
        "float labels with cross-entropy": (dict(y=y.astype(np.float32)), TypeError, r"labels must be integers"),
        "X with NaN": (dict(X=Xnan), ValueError, r"NaN.*\(7, 3\)"),
        "X with inf": (dict(X=Xinf), ValueError, r"infinity.*\(2, 0\)"),
        "y length mismatch": (dict(y=y[:-1]), ValueError, rf"{N} entries.*\({N - 1},\)"),
        "batch_size 0": (dict(batch_size=0), ValueError, r"batch_size must be a positive integer, got 0"),
        "batch_size negative": (dict(batch_size=-4), ValueError, r"batch_size"),
        "batch_size float": (dict(batch_size=8.0), ValueError, r"batch_size"),
        "optimizer of another model": (dict(optimizer=optim.SGD(other.parameters(), lr=0.1)), ValueError,
                                       r"optimizer does not hold this model's parameters"),
        "validation_data and validation_split": (dict(validation_data=(X, y), validation_split=0.2), ValueError,
                                                 r"not both"),
        "validation_split out of range": (dict(validation_split=1.0), ValueError, r"validation_split"),
        "validation X wrong feature count": (dict(validation_data=(X[:, :5], y)), ValueError,
                                             rf"validation X has shape \({N}, 5\)"),
        "validation labels out of range": (dict(validation_data=(X, yout)), ValueError, r"validation y\[5\] = 9"),
        "validation_data not a pair": (dict(validation_data=(X,)), ValueError, r"pair \(X_val, y_val\)"),
        "unknown loss": (dict(loss="hinge"), ValueError, r"unknown loss 'hinge'"),
        "unknown optimizer": (dict(optimizer="lion"), ValueError, r"optimizer must be"),
        "string X": (dict(X=np.array([["a"] * FEATURES] * N)), TypeError, r"numeric"),
        "1-D X": (dict(X=X[:, 0]), ValueError, r"\(N, features"),
        "mse target width": (dict(loss="mse", y=np.zeros((N, 3))), ValueError, r"4 values per sample"),
        "negative epochs": (dict(epochs=-1), ValueError, r"epochs"),
        "callback not a Callback": (dict(callbacks=[print]), TypeError, r"Callback"),
    }


_BAD = _bad_cases()


@pytest.mark.parametrize("case", list(_BAD))
def test_bad_input_is_a_clear_error_and_leaves_the_model_unchanged(case):
    kwargs, exc, pattern = _BAD[case]
    X, y = blobs(N)
    model = mlp(batchnorm=True)
    opt = optim.Adam(model.parameters())
    before, opt_before = model.state_dict(), opt.state_dict()
    args = dict(X=X, y=y, optimizer=opt, epochs=2, batch_size=8, verbose=0)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        fastnn.fit(model, args.pop("X"), args.pop("y"), **args)
    assert_state_equal(model.state_dict(), before)
    assert opt.state_dict()["state"].keys() == opt_before["state"].keys()
    np.testing.assert_array_equal(opt.state["step"], opt_before["state"]["step"])


def test_evaluate_and_predict_reject_bad_input():
    X, y = blobs(N)
    model = mlp()
    with pytest.raises(ValueError, match=rf"\({N}, 3\)"):
        fastnn.evaluate(model, X[:, :3], y)
    with pytest.raises(ValueError, match=r"y\[5\] = 9"):
        yout = y.copy()
        yout[5] = 9
        fastnn.evaluate(model, X, yout)
    with pytest.raises(ValueError, match=r"\bX\b.*NaN"):
        fastnn.predict(model, np.full((2, FEATURES), np.nan, np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        fastnn.predict(model, X, batch_size=0)
    with pytest.raises(TypeError, match="Module"):
        fastnn.predict(lambda x: x, X)


def _blow_up_data():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(64, FEATURES)) * 30
    return X, rng.normal(size=(64, CLASSES))


def test_nan_loss_raises_with_epoch_and_batch_and_keeps_the_last_good_parameters():
    X, t = _blow_up_data()
    a, b = mlp(dtype=np.float64), mlp(dtype=np.float64)
    opt_a, opt_b = optim.SGD(a.parameters(), lr=1.0), optim.SGD(b.parameters(), lr=1.0)
    with pytest.raises(FloatingPointError, match=r"epoch (\d+), batch (\d+)") as info:
        fastnn.fit(a, X, t, loss="mse", optimizer=opt_a, epochs=5, batch_size=16, shuffle=False, verbose=0)
    epoch, batch = (int(v) for v in re.search(r"epoch (\d+), batch (\d+)", str(info.value)).groups())
    assert np.isfinite(a.flat_parameters()).all()
    # The same steps one by one with train_step: it fails at the same batch, leaving the same parameters.
    steps_done = 0
    with pytest.raises(FloatingPointError, match="not changed"):
        for _ in range(5):
            for s in range(0, 64, 16):
                fastnn.train_step(b, X[s:s + 16], t[s:s + 16], nn.MSELoss(), opt_b)
                steps_done += 1
    assert steps_done == (epoch - 1) * 4 + (batch - 1)
    assert_state_equal(a, b)
    assert opt_a.state["step"][0] == steps_done


def test_terminate_on_nan_stops_training_with_finite_parameters():
    X, t = _blow_up_data()
    model = mlp(dtype=np.float64)
    history = fastnn.fit(model, X, t, loss="mse", optimizer=optim.SGD(model.parameters(), lr=1.0), epochs=50,
                         batch_size=16, callbacks=[TerminateOnNaN()], verbose=0)
    assert len(history) < 50
    assert all(np.isfinite(v) for v in history["loss"])
    assert np.isfinite(model.flat_parameters()).all()


# --- the acceptance run on the full data set ------------------------------------------------------

FULL_DATA = "/usr/share/datasets/fashion-mnist"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FULL_DATA), reason=f"full Fashion-MNIST not installed at {FULL_DATA}")
def test_fashion_mnist_mlp_reaches_88_percent():
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(path=FULL_DATA)
    assert len(X) == 60000
    fastnn.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(128, 10))

    class StopAt88(Callback):  # stopping early also checks that fit honours fit_state.stop_training
        def on_epoch_end(self, epoch, logs=None):
            if logs["val_accuracy"] >= 0.88:
                self.fit_state.stop_training = True

    history = fastnn.fit(model, X, y, optimizer=optim.Adam(model.parameters(), lr=1e-3), epochs=10, batch_size=128,
                         validation_data=(Xt, yt), seed=0, callbacks=[StopAt88()], verbose=0)
    assert history["val_accuracy"][-1] >= 0.88, history
    assert all(a < 0.88 for a in history["val_accuracy"][:-1])
    assert fastnn.evaluate(model, Xt, yt)["accuracy"] == history["val_accuracy"][-1]


def test_lr_with_an_optimizer_object_is_an_error():
    model = nn.Sequential(nn.Linear(3, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    X, y = np.ones((4, 3), np.float32), np.zeros(4, np.int64)
    before = model.state_dict()
    with pytest.raises(ValueError, match="lr= goes with an optimizer name"):
        fastnn.fit(model, X, y, optimizer=opt, lr=0.5, verbose=0)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k])


def test_denormals_are_flushed_only_inside_fit():
    """fit flushes denormals (Adam's decaying moments) but restores the caller's FP mode."""
    model = nn.Sequential(nn.Linear(3, 2))
    fastnn.fit(model, np.ones((8, 3), np.float32), np.zeros(8, np.int64), optimizer="adam", verbose=0)
    tiny = np.array([1e-40], np.float32)
    assert (tiny * np.float32(1.0))[0] != 0
