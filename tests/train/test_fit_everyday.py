"""Issue 11's fit/evaluate semantics: evaluate remembers the last fit's loss and metrics (the
issue's repro), Keras loss names, metrics=, class_weight= and sample_weight= in the C++ loop,
the loss options in training, initial_epoch as Keras, frozen BatchNorm, the Softmax warning,
ValidationSplit, verbose= and the progress output."""

import io
import re
import sys

import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn import nn, optim
from fastnn.train import EarlyStopping, ValidationSplit
from fastnn.train.progress import make_bar
from tests.conftest import assert_sum_close
from tests.train.cases import CLASSES, FEATURES, assert_state_equal, blobs, mlp


def regression(n=120, outputs=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, FEATURES)).astype(np.float32)
    return X, (X[:, :outputs] * 0.5 + 0.1).astype(np.float32)


def sgd_step(model, grad_of_output, lr, X=None):
    """One SGD step of `model` (training mode) from d loss / d output = grad_of_output(output)."""
    model.train()
    opt = optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    model.backward(grad_of_output(model(X if X is not None else sgd_step.X)))
    opt.step()


# --- evaluate remembers the loss of fit (Keras's compile) ----------------------------------------------


def test_evaluate_after_fit_with_mse_reports_mse():
    """The issue's repro: fit(loss="mse") then evaluate(X, y) reported cross-entropy and accuracy."""
    X, y = regression()
    model = mlp(classes=3)
    fastnn.fit(model, X, y, loss="mse", epochs=3, verbose=0, seed=0)
    result = fastnn.evaluate(model, X, y)
    assert set(result) == {"loss"}
    want = F.mse_forward(fastnn.predict(model, X), y)
    assert result["loss"] == pytest.approx(want, rel=1e-6)
    assert model.evaluate(X, y) == result
    # an explicit loss still wins, and is not remembered
    assert fastnn.evaluate(model, X, y, loss="mae")["loss"] == pytest.approx(F.l1_forward(fastnn.predict(model, X), y),
                                                                            rel=1e-6)
    assert fastnn.evaluate(model, X, y) == result


def test_evaluate_remembers_the_loss_options_and_metrics():
    X, y = blobs(120)
    w = np.array([1.0, 2.0, 0.5, 3.0])
    model = mlp()
    fastnn.fit(model, X, y, loss=nn.CrossEntropyLoss(weight=w, label_smoothing=0.1), metrics=["top_2_accuracy"],
               epochs=1, verbose=0, seed=0)
    result = fastnn.evaluate(model, X, y)
    assert set(result) == {"loss", "top_2_accuracy"}
    out = fastnn.predict(model, X)
    assert result["loss"] == pytest.approx(F.cross_entropy_forward(out, y, weight=w, label_smoothing=0.1), rel=1e-5)


def test_evaluate_without_any_loss_is_an_error_unless_the_targets_say():
    X, y = regression()
    model = mlp(classes=3)
    with pytest.raises(ValueError, match=r"evaluate: which loss\? The model was never trained with fit\(\)"):
        fastnn.evaluate(model, X, y)
    Xc, yc = blobs(40)
    assert set(fastnn.evaluate(mlp(), Xc, yc)) == {"loss", "accuracy"}  # integer labels: cross-entropy


# --- loss names and options in the C++ loop ------------------------------------------------------------


@pytest.mark.parametrize("alias,obj,kind", [
    ("sparse_categorical_crossentropy", nn.CrossEntropyLoss(), "labels"),
    ("categorical_crossentropy", nn.CrossEntropyLoss(), "onehot"),
    ("binary_crossentropy", nn.BCEWithLogitsLoss(), "onehot"),
    ("mean_squared_error", nn.MSELoss(), "values"),
    ("mse", nn.MSELoss(), "values"),
    ("mean_absolute_error", nn.L1Loss(), "values"),
    ("mae", nn.L1Loss(), "values"),
    ("huber", nn.HuberLoss(), "values"),
])
def test_keras_loss_names_are_aliases(alias, obj, kind):
    X, y = blobs(64)
    target = {"labels": y, "onehot": nn.one_hot(y, CLASSES), "values": nn.one_hot(y, CLASSES) * 2 - 1}[kind]
    a, b = mlp(), mlp()
    ha = fastnn.fit(a, X, target, loss=alias, optimizer="sgd", lr=0.1, epochs=1, verbose=0, seed=1)
    hb = fastnn.fit(b, X, target, loss=obj, optimizer="sgd", lr=0.1, epochs=1, verbose=0, seed=1)
    assert_state_equal(a, b)
    assert ha["loss"] == hb["loss"]


@pytest.mark.parametrize("loss,target,final", [
    (nn.CrossEntropyLoss(weight=np.array([1.0, 2.0, 0.5, 3.0]), label_smoothing=0.2), "labels", None),
    (nn.CrossEntropyLoss(ignore_index=2), "labels", None),
    (nn.NLLLoss(weight=np.array([1.0, 2.0, 0.5, 3.0])), "labels", "logsoftmax"),
    (nn.BCEWithLogitsLoss(pos_weight=np.array([1.0, 3.0, 0.5, 2.0])), "onehot", None),
    (nn.L1Loss(), "values", None),
    (nn.SmoothL1Loss(beta=0.3), "values", None),
    (nn.HuberLoss(delta=0.4, reduction="sum"), "values", None),
])
def test_loss_options_in_the_loop_match_the_loss_object(loss, target, final):
    """One full-batch SGD step of fit equals the step from the loss object's own gradient, and
    evaluate equals the loss object on predict's outputs."""
    X, y = blobs(48, dtype=np.float64)
    t = {"labels": y, "onehot": nn.one_hot(y, CLASSES, np.float64), "values": nn.one_hot(y, CLASSES, np.float64) - 0.3}[target]

    def build():
        m = mlp(dtype=np.float64)
        return nn.Sequential(m, nn.LogSoftmax(dtype=np.float64)) if final else m

    model, manual = build(), build()
    sgd_step.X = X
    before = fastnn.evaluate(model, X, t, loss=loss)["loss"]
    per_sample = len(X) if loss.reduction == "sum" else 1  # fit and evaluate report a sum's mean per sample
    assert before == pytest.approx(loss(fastnn.predict(model, X), t) / per_sample, rel=1e-12)
    fastnn.fit(model, X, t, loss=loss, optimizer="sgd", lr=0.5, batch_size=len(X), epochs=1, verbose=0, seed=0)
    sgd_step(manual, lambda out: (loss(out, t), loss.backward())[1], 0.5)
    assert_state_equal(model, manual, exact=False, rtol=1e-10, atol=1e-12)


def test_fit_rejects_losses_it_cannot_train_on():
    X, y = blobs(32)
    with pytest.raises(ValueError, match=r"fit: the loss's reduction must be 'mean' or 'sum' .* got 'none'"):
        fastnn.fit(mlp(), X, y, loss=nn.CrossEntropyLoss(reduction="none"), verbose=0)
    with pytest.raises(ValueError, match=r"fit: BCEWithLogitsLoss\(weight=...\) weighs the elements of one batch"):
        fastnn.fit(mlp(), X, nn.one_hot(y, CLASSES), loss=nn.BCEWithLogitsLoss(weight=np.ones(4)), verbose=0)
    with pytest.raises(ValueError, match=r"the loss's weight has 3 entries, but the model has 4 outputs"):
        fastnn.fit(mlp(), X, y, loss=nn.CrossEntropyLoss(weight=np.ones(3)), verbose=0)
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'"):
        fastnn.fit(mlp(), X, y, loss="hinge", verbose=0)
    with pytest.raises(ValueError, match=r"y: NLLLoss takes integer class labels"):
        fastnn.fit(mlp(), X, nn.one_hot(y, CLASSES), loss="nll", verbose=0)


# --- metrics -------------------------------------------------------------------------------------------


def test_metrics_match_numpy_on_the_outputs():
    X, y = blobs(150)
    model = mlp()
    fastnn.fit(model, X, y, epochs=1, verbose=0, seed=0)
    out = fastnn.predict(model, X)
    r = fastnn.evaluate(model, X, y, metrics=["accuracy", "top_k_accuracy", "top_2_accuracy"][:2], batch_size=32)
    rank = (out > out[np.arange(len(y)), y][:, None]).sum(1)
    assert r["accuracy"] == np.mean(out.argmax(1) == y)
    assert r["top_k_accuracy"] == np.mean(rank < 5) == 1.0  # 4 classes: always in the top 5
    assert fastnn.evaluate(model, X, y, metrics=["top_2_accuracy"])["top_2_accuracy"] == np.mean(rank < 2)
    Xr, t = regression()
    reg = mlp(classes=3)
    h = fastnn.fit(reg, Xr, t, loss="huber", metrics=["mae", "mse"], validation_split=0.25, epochs=2, verbose=0, seed=0)
    assert set(h.history) == {"loss", "mae", "mse", "val_loss", "val_mae", "val_mse", "lr", "seconds"}
    r = fastnn.evaluate(reg, Xr, t)
    o = fastnn.predict(reg, Xr).astype(np.float64)
    assert r["mae"] == pytest.approx(np.abs(o - t).mean(), rel=1e-6)
    assert r["mse"] == pytest.approx(((o - t) ** 2).mean(), rel=1e-6)
    assert h["val_mae"][-1] == pytest.approx(np.abs(o[-30:] - t[-30:]).mean(), rel=1e-6)


@pytest.mark.parametrize("metrics,kernel_target,match", [
    (["accuracy"], "values", r"metric 'accuracy' needs a classification loss"),
    (["mae"], "labels", r"metric 'mae' compares outputs with value targets"),
    (["f1"], "labels", r"unknown metric 'f1'"),
    ("accuracy", "labels", r"metrics must be a list of metric names"),
    (["top_2_accuracy", "top_3_accuracy"], "labels", r"one top-k accuracy"),
])
def test_bad_metrics(metrics, kernel_target, match):
    X, y = blobs(32)
    loss, t = ("mse", nn.one_hot(y, CLASSES)) if kernel_target == "values" else ("cross_entropy", y)
    with pytest.raises((ValueError, TypeError), match=match):
        fastnn.fit(mlp(), X, t, loss=loss, metrics=metrics, verbose=0)


# --- sample_weight and class_weight ----------------------------------------------------------------------


def test_sample_weight_is_keras_weighted_mean():
    X, y = blobs(40, dtype=np.float64)
    w = np.random.default_rng(0).uniform(0, 2, len(X))
    model, manual = mlp(dtype=np.float64), mlp(dtype=np.float64)
    r = fastnn.evaluate(model, X, y, sample_weight=w, batch_size=16)
    losses = F.cross_entropy_forward(fastnn.predict(model, X), y, "none")
    assert r["loss"] == pytest.approx(np.sum(w * losses) / len(X), rel=1e-12)
    # one full-batch SGD step: the gradient of sum(w_i loss_i) / N
    fastnn.fit(model, X, y, optimizer="sgd", lr=0.3, batch_size=len(X), sample_weight=w, verbose=0, seed=0)
    sgd_step(manual, lambda out: F.cross_entropy_backward(out, y, w / len(X), "none"), 0.3, X)
    assert_state_equal(model, manual, exact=False, rtol=1e-11, atol=1e-13)


def test_class_weight_is_the_sample_weight_of_each_class():
    X, y = blobs(80)
    cw = {0: 2.0, 2: 0.5}
    a, b = mlp(), mlp()
    fastnn.fit(a, X, y, class_weight=cw, epochs=2, verbose=0, seed=3)
    table = np.array([2.0, 1.0, 0.5, 1.0])
    fastnn.fit(b, X, y, sample_weight=table[y], epochs=2, verbose=0, seed=3)
    assert_state_equal(a, b)
    c = mlp()
    fastnn.fit(c, X, y, epochs=2, verbose=0, seed=3)
    assert not np.array_equal(c.state_dict()["0.weight"], a.state_dict()["0.weight"])  # the weights do act
    # with validation_split the weights are split with the samples
    fastnn.fit(mlp(), X, y, sample_weight=table[y], validation_split=0.25, epochs=1, verbose=0)


def test_bad_sample_and_class_weights():
    X, y = blobs(32)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(32,\)"):
        fastnn.fit(mlp(), X, y, sample_weight=np.ones(31), verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight must be finite and >= 0"):
        fastnn.fit(mlp(), X, y, sample_weight=-np.ones(32), verbose=0)
    with pytest.raises(TypeError, match=r"class_weight must be a dict"):
        fastnn.fit(mlp(), X, y, class_weight=[1, 2], verbose=0)
    with pytest.raises(ValueError, match=r"class_weight keys must be class indices >= 0, got 'a'"):
        fastnn.fit(mlp(), X, y, class_weight={"a": 1.0}, verbose=0)


# --- initial_epoch, frozen BatchNorm, Softmax warning --------------------------------------------------


def test_initial_epoch_is_keras():
    X, y = blobs(64)
    h = fastnn.fit(mlp(), X, y, epochs=3, initial_epoch=1, verbose=0, seed=0)
    assert h.epoch == [1, 2]
    assert len(fastnn.fit(mlp(), X, y, epochs=2, initial_epoch=2, verbose=0)) == 0


def test_a_frozen_batchnorm_in_eval_mode_keeps_its_statistics():
    X, y = blobs(96)
    model = mlp(batchnorm=True)
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm1d)
    fastnn.fit(model, X, y, epochs=1, verbose=0, seed=0)  # some running statistics
    bn.eval()
    bn.requires_grad_(False)
    stats = {k: v.copy() for k, v in bn.state_dict().items()}
    fastnn.fit(model, X, y, epochs=2, verbose=0, seed=0)
    fastnn.train_step(model, X[:16], y[:16], "cross_entropy", model._fit_optimizer[1])
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, stats[k], err_msg=k)
    assert not bn.training and model[0].training
    # frozen but in training mode, or in eval mode but trainable: fit trains it as before
    for freeze, mode in ((True, "train"), (False, "eval")):
        m = mlp(batchnorm=True)
        m[1].requires_grad_(not freeze)
        getattr(m[1], mode)()
        before = m[1].state_dict()["running_mean"].copy()
        fastnn.fit(m, X, y, epochs=1, verbose=0, seed=0)
        assert not np.array_equal(m[1].state_dict()["running_mean"], before)


def test_softmax_before_cross_entropy_warns_once():
    X, y = blobs(32)
    model = nn.Sequential(nn.Linear(FEATURES, CLASSES), nn.Softmax())
    with pytest.warns(UserWarning, match=r"the model ends in Softmax, .* remove the final Softmax layer"):
        fastnn.fit(model, X, y, verbose=0)
    fastnn.fit(model, X, y, verbose=0)  # once: no warning (filterwarnings = error)
    fastnn.fit(nn.Sequential(nn.Linear(FEATURES, CLASSES), nn.LogSoftmax()), X, y, verbose=0)  # harmless: no warning
    fastnn.fit(nn.Sequential(nn.Linear(FEATURES, 3), nn.Softmax()), X, regression(32)[1], loss="mse", verbose=0)


# --- validation split ------------------------------------------------------------------------------------


def test_validation_split_shuffled_and_stratified():
    y = np.repeat(np.arange(4), [40, 20, 20, 20])  # sorted: the last fraction holds class 3 only
    split = ValidationSplit(0.25, shuffle=True, stratify=True, seed=5)
    train, val = split.indices(y, len(y))
    assert np.bincount(y[val]).tolist() == [10, 5, 5, 5]
    assert sorted(np.concatenate([train, val])) == list(range(len(y)))
    np.testing.assert_array_equal(ValidationSplit(0.25, shuffle=True, stratify=True, seed=5).indices(y, len(y))[1], val)
    assert not np.array_equal(ValidationSplit(0.25, shuffle=True, stratify=True, seed=6).indices(y, len(y))[1], val)
    _, last = ValidationSplit(0.25).indices(y, len(y))
    assert last.tolist() == list(range(75, 100))
    # in fit: the validation metrics are those of the held-out samples
    X = np.random.default_rng(0).normal(size=(100, FEATURES)).astype(np.float32)
    model = mlp()
    h = fastnn.fit(model, X, y, validation_split=split, epochs=1, verbose=0, seed=0)
    assert h["val_loss"][0] == pytest.approx(fastnn.evaluate(model, X[val], y[val])["loss"], rel=1e-6)
    with pytest.raises(ValueError, match=r"ValidationSplit: fraction must be"):
        ValidationSplit(1.0)


# --- verbose and progress --------------------------------------------------------------------------------


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_1_and_2_write_one_line_per_epoch_to_stdout_without_a_tty(verbose, capsys):
    X, y = blobs(64)
    fastnn.fit(mlp(), X, y, epochs=2, batch_size=8, validation_split=0.25, verbose=verbose, seed=0)
    out, err = capsys.readouterr()
    assert err == "" and "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("epoch 2/2: loss ") and " val_accuracy " in lines[1] and lines[1].endswith("s)")


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_terminal_progress_bar_has_eta_and_running_loss():
    f = FakeTTY()
    bar = make_bar(40, "epoch 1/3", 1, f)
    bar.update_to(10, {"loss": 0.5, "accuracy": 0.75})
    bar.update_to(40, {"loss": 0.25, "accuracy": 0.875})
    bar.close("loss 0.2500 (1.00s)")
    text = f.getvalue()
    assert "\r" in text and "10/40 ETA " in text and "loss 0.5000 accuracy 0.7500" in text and "[" in text
    frames = text.split("\r")
    assert frames[-1].rstrip() == "epoch 1/3: loss 0.2500 (1.00s)" and text.endswith("\n")  # the bar is replaced
    assert len(frames[-1]) - 1 >= len(frames[-2])  # padded over the longer bar: no stale characters
    assert make_bar(40, "epoch 1/3", 1, io.StringIO()) is None  # no terminal: no frames
    assert make_bar(40, "epoch 1/3", 2, f) is None


def test_fit_on_a_terminal_shows_the_running_metrics(monkeypatch):
    # the C++ loop reports the epoch's sums so far; the bar shows their loss and metrics
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    X, y = blobs(64)
    fastnn.fit(mlp(), X, y, epochs=1, batch_size=8, verbose=1, seed=0, metrics=["accuracy", "top_2_accuracy"])
    frames = tty.getvalue().split("\r")
    assert any(re.search(r"8/8 ETA \S+ loss \d\.\d{4} accuracy \d\.\d{4} top_2_accuracy \d\.\d{4}", f) for f in frames)


def test_verbose_evaluate_and_callbacks(capsys, tmp_path):
    X, y = blobs(64)
    model = mlp()
    fastnn.fit(model, X, y, epochs=1, verbose=0, seed=0)
    r = fastnn.evaluate(model, X, y, verbose=1)
    assert capsys.readouterr().out == f"evaluate: loss {r['loss']:.4f} accuracy {r['accuracy']:.4f}\n"
    stop = EarlyStopping(monitor="loss", patience=0, min_delta=10.0, restore_best_weights=True, verbose=1)
    ckpt = fastnn.train.ModelCheckpoint(tmp_path / "m.fnn", monitor="loss", verbose=1)
    fastnn.fit(model, X, y, epochs=5, verbose=0, callbacks=[stop, ckpt], seed=0)
    out = capsys.readouterr().out
    assert "epoch 1: saving the model to " in out
    assert "epoch 2: early stopping (loss did not improve for 1 epoch; best " in out
    assert "restoring the weights of the best epoch, 1" in out
    with pytest.raises(ValueError, match=r"EarlyStopping: verbose must be"):
        EarlyStopping(verbose=3)
