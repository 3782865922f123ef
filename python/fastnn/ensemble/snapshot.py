"""Snapshot ensembles (Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free"): one run
with a cyclic cosine learning rate; the model at the end of each cycle (a low-lr minimum, just
before the restart kicks it out) is a member."""

import math

from .. import _validate as _v
from .. import io as _io
from ..train.callbacks import Callback
from ..train.fit import fit as _fit
from ..tune import trial as _trial
from . import members as _m

__all__ = ["SnapshotCallback", "SnapshotEnsemble"]


class SnapshotCallback(Callback):
    """Sets lr = lr_max/2 · (1 + cos(π · (epoch mod T) / T)) at each epoch's start, T = epochs_per_cycle,
    and keeps the model's bytes (fastnn's format) at the end of each cycle in ``snapshots``."""

    def __init__(self, lr_max, epochs_per_cycle):
        self.lr_max = _v.check_real(lr_max, "SnapshotCallback", "lr_max", 0, low_open=True)
        self.epochs_per_cycle = _v.check_int(epochs_per_cycle, "SnapshotCallback", "epochs_per_cycle", 1)
        self.snapshots = []

    def lr_at(self, epoch):
        t = (epoch % self.epochs_per_cycle) / self.epochs_per_cycle
        return self.lr_max / 2 * (1 + math.cos(math.pi * t))

    def on_epoch_begin(self, epoch, logs=None):
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.epochs_per_cycle == 0:
            self.snapshots.append(_io.to_bytes(self.model))


class SnapshotEnsemble(_m.Combined):
    """``n_snapshots`` cycles of ``epochs_per_cycle`` epochs of one model; members are the snapshots
    (``members_``), combined by soft voting (classification) or averaging (regression).
    The model given is trained in place (it ends as the last snapshot)."""

    def __init__(self, model, n_snapshots=5, epochs_per_cycle=2, lr_max=0.1, optimizer="sgd",
                 task="classification"):
        fn = "SnapshotEnsemble"
        self.model = _m.check_members([model], fn)[0]
        self.n_snapshots = _v.check_int(n_snapshots, fn, "n_snapshots", 1)
        self.epochs_per_cycle = _v.check_int(epochs_per_cycle, fn, "epochs_per_cycle", 1)
        self.lr_max = _v.check_real(lr_max, fn, "lr_max", 0, low_open=True)
        self.optimizer = optimizer
        self.task = _m.check_task(task, fn)

    def fit(self, X, y, seed=0, callbacks=None, **fit_params):
        fit_params.setdefault("loss", "cross_entropy" if self.task == "classification" else "mse")
        snap = SnapshotCallback(self.lr_max, self.epochs_per_cycle)
        opt = _trial.make_optimizer(self.model, self.optimizer, self.lr_max)
        self.history_ = _fit(self.model, X, y, optimizer=opt, epochs=self.n_snapshots * self.epochs_per_cycle,
                             seed=_v.check_seed(seed, "SnapshotEnsemble"), callbacks=[snap, *(callbacks or [])],
                             verbose=fit_params.pop("verbose", 0), **fit_params)
        self.members_ = [_io.from_bytes(b) for b in snap.snapshots]
        return self
