"""What every ensemble shares: members that train in parallel on a tune executor (crossing to the
workers and back as fastnn model bytes), one batched C++ pass per member to predict, and the
combination of the members' outputs in NumPy."""

import numpy as np

from .. import _validate as _v
from .. import io as _io
from ..nn.module import Module
from ..train.fit import predict as _predict
from ..tune import executors as _ex
from ..tune import trial as _trial

TASKS = ("classification", "regression")


def check_members(members, fn):
    members = list(members) if isinstance(members, (list, tuple)) else members
    if not isinstance(members, list) or not members or not all(isinstance(m, Module) for m in members):
        raise TypeError(f"{fn}: members must be a non-empty list of fastnn models, got {members!r:.100}")
    return members


def check_task(task, fn):
    return _v.check_choice(task, fn, "task", TASKS)


def train(executor, models, datasets, fit_params, seeds, retries=1, fn="ensemble"):
    """Trains models[i] on datasets[i] = (X, y) with fit(**fit_params, seed=seeds[i]), in parallel on
    `executor` (None: the local process pool; "sequential": here); returns the trained models."""
    if "seed" in fit_params or "verbose" in fit_params:
        raise ValueError(f"{fn}: seed= goes to the ensemble (each member gets its own); members train silently")
    args = [(_io.to_bytes(m), X, y, dict(fit_params), int(s), None) for m, (X, y), s in zip(models, datasets, seeds)]
    results, failures = _ex.run_tasks(_ex.default_executor() if executor is None else executor, _trial.fit_member,
                                      args, retries=retries)
    lost = [i for i, r in enumerate(results) if r is None]
    if lost:
        raise RuntimeError(f"{fn}: members {lost} could not be trained: their workers died ({failures[-1]['error']})")
    return [_io.from_bytes(r) for r in results]


def outputs(models, X, batch_size=256):
    """(members, N, outputs): each member's predictions, one batched C++ pass per member."""
    return np.stack([_predict(m, X, batch_size=batch_size).reshape(len(X), -1) for m in models])


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def member_seeds(seed, n):
    return [int(s) for s in np.random.default_rng([seed, 3]).integers(0, 2**63, n)]


def check_weights(weights, n, fn):
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"{fn}: weights must be {n} non-negative numbers, not all 0, got {weights!r}")
    return w / w.sum()


class Combined:
    """Prediction for an ensemble with ``self.members_`` and ``self.task``: probabilities averaged
    (soft voting) or majority of labels (hard voting) for classification, mean for regression."""

    voting = "soft"
    weights = None

    def _check_fitted(self):
        if not getattr(self, "members_", None):
            raise RuntimeError(f"{type(self).__name__}: call fit first")

    def member_outputs(self, X):
        self._check_fitted()
        return outputs(self.members_, X)

    def _member_weights(self):
        return check_weights(self.weights, len(self.members_), type(self).__name__)

    def predict_proba(self, X):
        if self.task != "classification":
            raise ValueError(f"{type(self).__name__}.predict_proba: a regression ensemble has no probabilities")
        out = self.member_outputs(X)
        w = self._member_weights()
        if self.voting == "soft":
            return np.tensordot(w, softmax(out.astype(np.float64)), axes=1)
        votes = np.zeros(out.shape[1:], np.float64)
        labels = out.argmax(axis=-1)
        for wi, li in zip(w, labels):
            votes[np.arange(len(li)), li] += wi
        return votes  # the weighted fraction of votes per class

    def predict(self, X):
        if self.task == "classification":
            return self.predict_proba(X).argmax(axis=-1)  # hard-vote ties go to the lowest class
        out = np.tensordot(self._member_weights(), self.member_outputs(X).astype(np.float64), axes=1)
        return out[:, 0] if out.shape[1] == 1 else out

    def score(self, X, y):
        """Accuracy (classification) or R² (regression) of the ensemble on (X, y)."""
        return score(self.task, self.predict(X), y)

    def member_scores(self, X, y):
        """The score of each member alone, in the same measure as score()."""
        out = self.member_outputs(X)
        if self.task == "classification":
            return [score(self.task, o.argmax(axis=-1), y) for o in out]
        return [score(self.task, o[:, 0] if o.shape[1] == 1 else o, y) for o in out]


def score(task, prediction, y):
    y = np.asarray(y)
    if task == "classification":
        return float(np.mean(prediction == y))
    y = y.reshape(prediction.shape).astype(np.float64)
    total = np.sum((y - y.mean(axis=0)) ** 2)
    return float(1 - np.sum((y - prediction) ** 2) / total) if total > 0 else float("nan")
