"""Callbacks called by fit() at epoch ends (Keras names and semantics)."""

import csv
import math
import os

from .. import _validate as _v
from .progress import write_line


def _verbose(verbose, fn):
    """0 silent, 1 (or 2) one line on fit's stream when the callback acts (Keras's verbose)."""
    return _v.check_choice(verbose, fn, "verbose", (0, 1, 2))


class Callback:
    """Base class. fit() sets ``self.model``, ``self.optimizer`` and ``self.fit_state`` before training.

    Set ``self.fit_state.stop_training = True`` to stop after the current epoch.
    """

    model = None
    optimizer = None
    fit_state = None

    def set_context(self, model, optimizer, fit_state):
        self.model, self.optimizer, self.fit_state = model, optimizer, fit_state

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass


def _monitor_mode(monitor, mode, fn):
    if not isinstance(monitor, str):
        raise TypeError(f"{fn}: monitor must be the name of a metric (a str), got {monitor!r}")
    mode = _v.check_choice(mode, fn, "mode", ("auto", "min", "max"))
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    return mode


class EarlyStopping(Callback):
    """Stops after `patience` epochs in a row in which `monitor` did not improve by more than `min_delta`.

    As in Keras, the check follows an epoch without improvement, so patience 0 and 1 both stop at
    the first one. The seeds' rule "stop when error[t+1] - error[t] > -eps" is ``patience=0, min_delta=eps``.
    restore_best_weights puts back the parameters (and running statistics) of the best epoch.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", baseline=None,
                 restore_best_weights=False, verbose=0):
        fn = "EarlyStopping"
        self.verbose = _verbose(verbose, fn)
        self.min_delta = _v.check_real(min_delta, fn, "min_delta", 0)
        self.patience = _v.check_int(patience, fn, "patience", 0)
        self.monitor, self.mode = monitor, _monitor_mode(monitor, mode, fn)
        self.baseline = None if baseline is None else _v.check_real(baseline, fn, "baseline")
        self.restore_best_weights = _v.check_bool(restore_best_weights, fn, "restore_best_weights")
        self.best = None
        self.best_epoch = None
        self.best_weights = None
        self.wait = 0
        self.stopped_epoch = None

    def _improved(self, value, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.best_weights, self.wait, self.stopped_epoch = self.baseline, None, None, 0, None

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping: monitor {self.monitor!r} is not among the metrics {sorted(logs)}")
        value = logs[self.monitor]
        if self._improved(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.fit_state.stop_training = True
            if self.verbose:
                write_line(f"epoch {epoch + 1}: early stopping ({self.monitor} did not improve for {self.wait} "
                           f"epoch{'s' if self.wait != 1 else ''}; best {self.best:.4f})" if self.best is not None else
                           f"epoch {epoch + 1}: early stopping")
            if self.restore_best_weights and self.best_weights is not None:
                self.model.load_state_dict(self.best_weights)
                if self.verbose:
                    write_line(f"restoring the weights of the best epoch, {self.best_epoch + 1}")


class ModelCheckpoint(Callback):
    """Saves the model (and optimizer) after each epoch, or only when `monitor` improves.

    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    `filepath` may contain ``{epoch}`` and metric names: ``"ckpt-{epoch:02d}-{val_loss:.3f}.fnn"``.
    """

    writes_files = True  # data-parallel fit runs it on rank 0 only

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto", save_optimizer=True,
                 verbose=0):
        fn = "ModelCheckpoint"
        self.verbose = _verbose(verbose, fn)
        self.filepath, self.monitor = os.fspath(filepath), monitor
        self.save_best_only = _v.check_bool(save_best_only, fn, "save_best_only")
        self.mode = _monitor_mode(monitor, mode, fn)
        self.save_optimizer = _v.check_bool(save_optimizer, fn, "save_optimizer")
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        from ..io import save

        if self.save_best_only:
            if self.monitor not in logs:
                raise KeyError(f"ModelCheckpoint: monitor {self.monitor!r} is not among the metrics {sorted(logs)}")
            value = logs[self.monitor]
            better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            if not better:
                if self.verbose:
                    write_line(f"epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.4f}")
                return
            if self.verbose and self.best is not None:
                write_line(f"epoch {epoch + 1}: {self.monitor} improved from {self.best:.4f} to {value:.4f}")
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.verbose:
            write_line(f"epoch {epoch + 1}: saving the model to {path}")
        save(path, self.model, self.optimizer if self.save_optimizer else None,
             extra={"epoch": epoch + 1, "global_step": self.fit_state.global_step})


class LearningRateScheduler(Callback):
    """Sets the learning rate at each epoch's start: ``schedule(epoch, lr) -> new lr`` (Keras), or
    steps a scheduler from :mod:`fastnn.optim.lr_scheduler` at each epoch's end
    (ReduceLROnPlateau gets the monitored metric)."""

    def __init__(self, schedule, monitor="val_loss", verbose=0):
        self.verbose = _verbose(verbose, "LearningRateScheduler")
        if not callable(schedule) and not hasattr(schedule, "step"):
            raise TypeError(f"LearningRateScheduler: schedule must be a function (epoch, lr) -> lr or a scheduler, "
                            f"got {schedule!r}")
        if not isinstance(monitor, str):
            raise TypeError(f"LearningRateScheduler: monitor must be the name of a metric (a str), got {monitor!r}")
        self.schedule, self.monitor = schedule, monitor

    def on_epoch_begin(self, epoch, logs=None):
        if callable(self.schedule) and not hasattr(self.schedule, "step"):
            lr = float(self.schedule(epoch, self.optimizer.param_groups[0]["lr"]))
            if not (math.isfinite(lr) and lr >= 0):
                raise ValueError(f"LearningRateScheduler: schedule returned an invalid learning rate {lr}")
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if self.verbose:
                write_line(f"epoch {epoch + 1}: learning rate {lr:g}")

    def on_epoch_end(self, epoch, logs=None):
        if hasattr(self.schedule, "step"):
            before = self.optimizer.param_groups[0]["lr"]
            if type(self.schedule).__name__ == "ReduceLROnPlateau":
                self.schedule.step(logs[self.monitor])
            else:
                self.schedule.step()
            after = self.optimizer.param_groups[0]["lr"]
            if self.verbose and after != before:
                write_line(f"epoch {epoch + 1}: learning rate {before:g} -> {after:g}")


class CSVLogger(Callback):
    """Appends one row of metrics per epoch to a CSV file."""

    writes_files = True  # data-parallel fit runs it on rank 0 only

    def __init__(self, filename, separator=",", append=False):
        if not (isinstance(separator, str) and len(separator) == 1):
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}")
        self.filename, self.separator = os.fspath(filename), separator
        self.append = _v.check_bool(append, "CSVLogger", "append")
        self._keys = None

    def on_train_begin(self, logs=None):
        self._keys = None
        if not self.append and os.path.exists(self.filename):
            os.remove(self.filename)

    def on_epoch_end(self, epoch, logs=None):
        new = not os.path.exists(self.filename) or os.path.getsize(self.filename) == 0
        if self._keys is None:
            self._keys = sorted(logs)
        with open(self.filename, "a", newline="") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if new:
                writer.writerow(["epoch"] + self._keys)
            writer.writerow([epoch] + [logs.get(k, "") for k in self._keys])


class TerminateOnNaN(Callback):
    """With this callback a NaN/inf loss stops training (keeping the last good parameters)
    instead of raising FloatingPointError."""


class LambdaCallback(Callback):
    """A callback from plain functions: on_epoch_end=lambda epoch, logs: ..."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None):
        self._hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                           on_train_begin=on_train_begin, on_train_end=on_train_end)
        for name, hook in self._hooks.items():
            if hook is not None and not callable(hook):
                raise TypeError(f"LambdaCallback: {name} must be a function or None, got {hook!r}")

    def on_epoch_begin(self, epoch, logs=None):
        if self._hooks["on_epoch_begin"]:
            self._hooks["on_epoch_begin"](epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._hooks["on_epoch_end"]:
            self._hooks["on_epoch_end"](epoch, logs)

    def on_train_begin(self, logs=None):
        if self._hooks["on_train_begin"]:
            self._hooks["on_train_begin"](logs)

    def on_train_end(self, logs=None):
        if self._hooks["on_train_end"]:
            self._hooks["on_train_end"](logs)


__all__ = ["Callback", "CSVLogger", "EarlyStopping", "LambdaCallback", "LearningRateScheduler", "ModelCheckpoint",
           "TerminateOnNaN"]
