"""Callbacks: EarlyStopping, ModelCheckpoint, LearningRateScheduler, CSVLogger, LambdaCallback.

Stopping rules are tested on scripted metric sequences: a LambdaCallback placed first writes
``logs["score"] = sequence[epoch]``, which the callbacks after it monitor.
"""

import csv
import os

import numpy as np
import pytest

import fastnn
from fastnn import optim
from fastnn.optim import lr_scheduler
from fastnn.train import (Callback, CSVLogger, EarlyStopping, LambdaCallback, LearningRateScheduler,
                          ModelCheckpoint)
from tests.train.cases import assert_state_equal, blobs, metrics, mlp, state_differs


def scripted(sequence, key="score"):
    def put(epoch, logs):
        logs[key] = sequence[epoch]

    return LambdaCallback(on_epoch_end=put)


def recorder(states):
    """Keeps a copy of the model's state at every epoch end (put it before EarlyStopping)."""
    cb = LambdaCallback(on_epoch_end=lambda epoch, logs: states.append(cb.model.state_dict()))
    return cb


def _fit(model, callbacks, epochs, X=None, y=None, **kw):
    if X is None:
        X, y = blobs(64)
    kw.setdefault("optimizer", optim.SGD(model.parameters(), lr=0.05))
    return fastnn.fit(model, X, y, epochs=epochs, batch_size=16, callbacks=callbacks, verbose=0, **kw)


# --- EarlyStopping -------------------------------------------------------------------------------

RISING_AFTER_1 = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0, 1.01, 1.02]


@pytest.mark.parametrize("patience, stop_epoch", [(0, 2), (1, 2), (2, 3), (3, 4), (8, 9)])
def test_early_stopping_patience(patience, stop_epoch):
    """Keras: stop after `patience` epochs without improvement (0 and 1 both stop at the first)."""
    es = EarlyStopping(monitor="score", patience=patience)
    history = _fit(mlp(), [scripted(RISING_AFTER_1), es], epochs=len(RISING_AFTER_1))
    assert es.stopped_epoch == stop_epoch
    assert history.epoch == list(range(stop_epoch + 1))
    assert es.best == 0.9 and es.best_epoch == 1


def test_early_stopping_runs_all_epochs_while_improving():
    es = EarlyStopping(monitor="score", patience=0)
    history = _fit(mlp(), [scripted([5, 4, 3, 2, 1]), es], epochs=5)
    assert len(history) == 5 and es.stopped_epoch is None and es.best_epoch == 4


def test_early_stopping_min_delta():
    sequence = [1.0, 0.95, 0.92, 0.91, 0.905, 0.9]
    es = EarlyStopping(monitor="score", patience=0, min_delta=0.02)
    assert len(_fit(mlp(), [scripted(sequence), es], epochs=6)) == 4  # 0.92 -> 0.91 is not an improvement of 0.02
    es = EarlyStopping(monitor="score", patience=0, min_delta=0.0)
    assert len(_fit(mlp(), [scripted(sequence), es], epochs=6)) == 6


@pytest.mark.parametrize("seed", range(5))
def test_early_stopping_is_the_seeds_rule(seed):
    """patience=0, min_delta=eps stops at the first t with error[t] - error[t-1] > -eps."""
    eps = 0.01
    rng = np.random.default_rng(seed)
    errors = list(1.0 - np.cumsum(rng.choice([0.002, 0.005, 0.03, 0.05], size=12)))
    expected = next((t for t in range(1, len(errors)) if errors[t] - errors[t - 1] > -eps), None)
    es = EarlyStopping(monitor="score", patience=0, min_delta=eps)
    history = _fit(mlp(), [scripted(errors), es], epochs=len(errors))
    assert es.stopped_epoch == expected
    assert len(history) == (expected + 1 if expected is not None else len(errors))


@pytest.mark.parametrize("monitor, mode", [("score", "max"), ("val_accuracy", "auto")])
def test_early_stopping_mode_max(monitor, mode):
    sequence = [0.5, 0.6, 0.7, 0.65, 0.66, 0.9]
    es = EarlyStopping(monitor=monitor, mode=mode, patience=2)
    X, y = blobs(64)
    history = _fit(mlp(), [scripted(sequence, key=monitor), es], epochs=6, validation_data=(X, y))
    assert es.mode == "max"
    assert len(history) == 5 and es.best == 0.7


@pytest.mark.parametrize("mode, sequence", [("min", [1.0, 0.9, 0.9, 0.9, 0.9, 0.8]), ("max", [0.1, 0.5, 0.5, 0.5, 0.5, 0.7])])
@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_tied_score_is_not_an_improvement(mode, sequence, patience):
    """Keras: an epoch that only equals the best does not reset the wait, and the best stays the first."""
    es = EarlyStopping(monitor="score", mode=mode, patience=patience)
    history = _fit(mlp(), [scripted(sequence), es], epochs=len(sequence))
    assert es.stopped_epoch == 1 + patience and len(history) == 2 + patience
    assert es.best == sequence[1] and es.best_epoch == 1


def test_early_stopping_tie_with_min_delta_and_with_baseline():
    es = EarlyStopping(monitor="score", patience=1, min_delta=0.25)  # 0.5 -> 0.25 improves by exactly min_delta: no
    assert len(_fit(mlp(), [scripted([1.0, 0.5, 0.25, 0.0]), es], epochs=4)) == 3 and es.best_epoch == 1
    es = EarlyStopping(monitor="score", patience=1, baseline=0.5)  # equal to the baseline: no improvement
    assert len(_fit(mlp(), [scripted([0.5, 0.5, 0.4]), es], epochs=3)) == 1 and es.best_epoch is None


def test_restore_best_weights_takes_the_first_of_tied_best_epochs():
    states = []
    es = EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    model = mlp(batchnorm=True)
    history = _fit(model, [scripted([1.0, 0.8, 0.8, 0.8, 0.7]), recorder(states), es], epochs=5)
    assert len(history) == 4 and es.best_epoch == 1
    assert state_differs(states[1], states[2])
    assert_state_equal(model.state_dict(), states[1])


def test_early_stopping_baseline():
    es = EarlyStopping(monitor="score", patience=2, baseline=0.5)
    history = _fit(mlp(), [scripted([0.6] * 6), es], epochs=6)
    assert len(history) == 2 and es.best_epoch is None


def test_early_stopping_unknown_monitor_and_bad_arguments():
    with pytest.raises(KeyError, match="val_loss"):
        _fit(mlp(), [EarlyStopping()], epochs=1)  # no validation data
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")


@pytest.mark.parametrize("restore", [True, False])
def test_restore_best_weights(tmp_path, restore):
    sequence = [1.0, 0.8, 0.9, 0.95, 0.99, 1.0]
    states = []
    es = EarlyStopping(monitor="score", patience=2, restore_best_weights=restore)
    ckpt = ModelCheckpoint(tmp_path / "best.fnn", monitor="score", save_best_only=True)
    model = mlp(batchnorm=True)
    history = _fit(model, [scripted(sequence), recorder(states), ckpt, es], epochs=6)
    assert len(history) == 4  # best at epoch 1, two epochs without improvement
    assert state_differs(states[1], states[3])
    if restore:
        assert_state_equal(model.state_dict(), states[1])  # BN running statistics included
        saved, _, extra = fastnn.load(tmp_path / "best.fnn", with_optimizer=True)
        assert extra["epoch"] == 2
        assert_state_equal(saved, model)
    else:
        assert_state_equal(model.state_dict(), states[3])


def test_early_stopping_on_overfitting_restores_the_minimum_of_val_loss():
    X, y = blobs(240, seed=1)
    Xtr, ytr, Xv, yv = X[:24], y[:24], X[24:], y[24:]
    model = mlp(hidden=64)
    es = EarlyStopping(patience=3, restore_best_weights=True)
    history = fastnn.fit(model, Xtr, ytr, optimizer=optim.Adam(model.parameters(), lr=3e-2), epochs=300,
                         batch_size=8, validation_data=(Xv, yv), callbacks=[es], seed=0, verbose=0)
    assert len(history) < 300, "the model never overfitted: the test proves nothing"
    best = int(np.argmin(history["val_loss"]))
    assert es.best_epoch == best and len(history) == best + 4
    assert fastnn.evaluate(model, Xv, yv)["loss"] == pytest.approx(history["val_loss"][best], rel=1e-12)


# --- ModelCheckpoint -------------------------------------------------------------------------------


def test_model_checkpoint_every_epoch_with_a_formatted_name(tmp_path):
    X, y = blobs(64)
    states = []
    model = mlp()
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.3f}.fnn")
    history = _fit(model, [recorder(states), ModelCheckpoint(pattern)], epochs=3, validation_data=(X, y))
    names = sorted(os.listdir(tmp_path))
    assert names == [f"ckpt-{e + 1:02d}-{v:.3f}.fnn" for e, v in enumerate(history["val_loss"])]
    for epoch, name in enumerate(names):
        saved, opt, extra = fastnn.load(tmp_path / name, with_optimizer=True)
        assert_state_equal(saved.state_dict(), states[epoch])
        assert extra == {"epoch": epoch + 1, "global_step": (epoch + 1) * 4}
        assert opt.state["step"][0] == (epoch + 1) * 4


def test_model_checkpoint_save_best_only(tmp_path):
    sequence = [1.0, 0.7, 0.8, 0.6, 0.9]
    saved_epochs = []
    states = []

    class Spy(Callback):  # after the checkpoint: which epoch does the file hold now?
        def on_epoch_end(self, epoch, logs=None):
            saved_epochs.append(fastnn.load(tmp_path / "best.fnn", with_optimizer=True)[2]["epoch"])

    ckpt = ModelCheckpoint(tmp_path / "best.fnn", monitor="score", save_best_only=True, save_optimizer=False)
    _fit(mlp(), [scripted(sequence), recorder(states), ckpt, Spy()], epochs=5)
    assert saved_epochs == [1, 2, 2, 4, 4]
    model, opt, _ = fastnn.load(tmp_path / "best.fnn", with_optimizer=True)
    assert opt is None
    assert_state_equal(model.state_dict(), states[3])
    assert os.listdir(tmp_path) == ["best.fnn"]  # no temporary files left behind


# --- LearningRateScheduler -------------------------------------------------------------------------


def test_learning_rate_scheduler_with_a_function():
    seen = []
    schedule = LearningRateScheduler(lambda epoch, lr: seen.append((epoch, lr)) or 0.1 * 0.5**epoch)
    model = mlp()
    history = _fit(model, [schedule], epochs=4, optimizer=optim.SGD(model.parameters(), lr=0.3))
    assert history["lr"] == [0.1, 0.05, 0.025, 0.0125]
    assert seen == [(0, 0.3), (1, 0.1), (2, 0.05), (3, 0.025)]  # schedule(epoch, current lr)


def test_learning_rate_scheduler_changes_the_rate_the_cpp_loop_uses():
    """A rate of 0 from epoch 1 on must freeze the parameters: the loop reads the new rate."""
    states = []
    model = mlp()
    schedule = LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else 0.0)
    _fit(model, [schedule, recorder(states)], epochs=3)
    assert_state_equal(states[0], states[2])
    assert state_differs(states[0], mlp().state_dict())


def test_learning_rate_scheduler_with_step_lr():
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    history = _fit(model, [LearningRateScheduler(lr_scheduler.StepLR(opt, step_size=2, gamma=0.1))], epochs=5,
                   optimizer=opt)
    np.testing.assert_allclose(history["lr"], [0.1, 0.1, 0.01, 0.01, 0.001], rtol=1e-12)


def test_learning_rate_scheduler_with_reduce_on_plateau():
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    sequence = [1.0, 0.9, 0.95, 0.96, 0.97, 0.8, 0.85, 0.86]
    history = _fit(model, [scripted(sequence), LearningRateScheduler(plateau, monitor="score")], epochs=8,
                   optimizer=opt)
    # 2 epochs worse than 0.9 (patience 1 exceeded) at epoch 3: halved from epoch 4 on; again after epoch 7
    np.testing.assert_allclose(history["lr"], [0.1] * 4 + [0.05] * 4, rtol=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_learning_rate_scheduler_rejects_a_bad_rate():
    with pytest.raises(ValueError, match="invalid learning rate"):
        _fit(mlp(), [LearningRateScheduler(lambda epoch, lr: float("nan"))], epochs=1)


# --- CSVLogger, LambdaCallback, stopping from a callback --------------------------------------------


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger(tmp_path):
    X, y = blobs(64)
    path = tmp_path / "log.csv"
    history = _fit(mlp(), [CSVLogger(path)], epochs=3, validation_data=(X, y))
    rows = _read_csv(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "lr", "seconds", "val_accuracy", "val_loss"]
    assert len(rows) == 4
    for epoch, row in enumerate(rows[1:]):
        assert int(row[0]) == epoch
        for key, value in zip(rows[0][1:], row[1:]):
            assert float(value) == history[key][epoch], key

    _fit(mlp(), [CSVLogger(path, append=True)], epochs=2, validation_data=(X, y))
    rows = _read_csv(path)
    assert len(rows) == 6 and rows.count(rows[0]) == 1  # appended rows, one header
    _fit(mlp(), [CSVLogger(path)], epochs=1, validation_data=(X, y))
    assert len(_read_csv(path)) == 2  # without append the file starts over


def test_lambda_callback_hooks_are_called_in_order():
    calls = []
    cb = LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: calls.append(("begin", epoch)),
        on_epoch_end=lambda epoch, logs: calls.append(("end", epoch, sorted(logs))),
        on_train_end=lambda logs: calls.append("train_end"))
    _fit(mlp(), [cb], epochs=5, initial_epoch=3)  # Keras: epochs is the last epoch's index
    keys = ["accuracy", "loss", "lr", "seconds"]
    assert calls == ["train_begin", ("begin", 3), ("end", 3, keys), ("begin", 4), ("end", 4, keys), "train_end"]


def test_a_callback_can_stop_training_and_sees_the_model_and_optimizer():
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.05)
    seen = {}

    class StopAfterTwo(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.update(model=self.model, optimizer=self.optimizer, step=self.fit_state.global_step)
            if epoch == 1:
                self.fit_state.stop_training = True

    history = _fit(model, [StopAfterTwo()], epochs=10, optimizer=opt)
    assert len(history) == 2
    assert seen == {"model": model, "optimizer": opt, "step": 8}


def test_callbacks_are_reusable_across_fits():
    es = EarlyStopping(monitor="score", patience=0)
    assert len(_fit(mlp(), [scripted([3, 2, 2.5]), es], epochs=3)) == 3
    assert len(_fit(mlp(), [scripted([3, 2, 1, 0]), es], epochs=4)) == 4  # state reset at train begin
    assert es.stopped_epoch is None


def test_training_results_do_not_depend_on_passive_callbacks(tmp_path):
    X, y = blobs(64)
    a, b = mlp(dropout=0.2), mlp(dropout=0.2)
    kw = dict(epochs=3, validation_data=(X, y), seed=3)
    h_a = _fit(a, [], **kw)
    h_b = _fit(b, [CSVLogger(tmp_path / "l.csv"), ModelCheckpoint(tmp_path / "c.fnn"), recorder([])], **kw)
    assert metrics(h_a) == metrics(h_b)
    assert_state_equal(a, b)
