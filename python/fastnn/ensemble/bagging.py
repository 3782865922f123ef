"""Bagging (Breiman 1996): each member trains on its own bootstrap sample; out-of-bag samples
(those a member never saw) give a validation score for free."""

import numpy as np

from .. import _validate as _v
from ..nn.module import Module
from ..tune import trial as _trial
from . import members as _m

__all__ = ["Bagging"]


class Bagging(_m.Combined):
    """Members built by ``estimator()`` (called once per member after ``fastnn.manual_seed``, so
    their initial weights differ), each trained on ``max_samples`` · N samples drawn with
    replacement (``bootstrap=True``) or without.

    After fit: ``members_``, ``estimators_samples_`` (each member's sample indices),
    ``oob_decision_function_`` (classification: the mean probabilities of the members for which a
    sample was out of bag, NaN where it never was) or ``oob_prediction_`` (regression), and
    ``oob_score_`` (accuracy, or R²) over the samples that were out of bag at least once.
    """

    voting = "soft"

    def __init__(self, estimator, n_estimators=10, max_samples=1.0, bootstrap=True, oob_score=True,
                 task="classification"):
        fn = "Bagging"
        if not callable(estimator) or isinstance(estimator, Module):
            raise TypeError(f"{fn}: estimator must be a function returning a fresh fastnn model, got "
                            f"{type(estimator).__name__}")
        self.estimator = estimator
        self.n_estimators = _v.check_int(n_estimators, fn, "n_estimators", 1)
        self.max_samples = _v.check_real(max_samples, fn, "max_samples", 0, low_open=True)
        self.bootstrap = _v.check_bool(bootstrap, fn, "bootstrap")
        if not self.bootstrap and self.max_samples > 1:
            raise ValueError(f"{fn}: max_samples={max_samples} > 1 needs bootstrap=True (sampling without replacement)")
        self.oob_score = _v.check_bool(oob_score, fn, "oob_score")
        self.task = _m.check_task(task, fn)

    def fit(self, X, y, seed=0, executor=None, retries=1, **fit_params):
        fn = "Bagging"
        seed = _v.check_seed(seed, fn)
        X, y = np.asarray(X), np.asarray(y)
        n = len(X)
        if len(y) != n:
            raise ValueError(f"{fn}: X and y must have the same length, got {len(X)} and {len(y)}")
        size = max(1, int(round(self.max_samples * n)))
        seeds = _m.member_seeds(seed, self.n_estimators)
        self.estimators_samples_, models = [], []
        for i, s in enumerate(seeds):
            rng = np.random.default_rng([seed, 5, i])
            idx = rng.integers(0, n, size) if self.bootstrap else rng.choice(n, size, replace=False)
            self.estimators_samples_.append(np.sort(idx))
            with _trial.seeded(s):
                models.append(self.estimator())
        fit_params.setdefault("loss", "cross_entropy" if self.task == "classification" else "mse")
        self.members_ = _m.train(executor, models, [(X[i], y[i]) for i in self.estimators_samples_], fit_params,
                                 seeds, retries, fn)
        if self.oob_score:
            self._oob(X, y)
        return self

    def _oob(self, X, y):
        n = len(X)
        out = self.member_outputs(X).astype(np.float64)
        if self.task == "classification":
            out = _m.softmax(out)
        total = np.zeros(out.shape[1:])
        count = np.zeros(n)
        for o, idx in zip(out, self.estimators_samples_):
            oob = np.ones(n, bool)
            oob[idx] = False
            total[oob] += o[oob]
            count[oob] += 1
        seen = count > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count[:, None]
        self.oob_count_ = count
        if self.task == "classification":
            self.oob_decision_function_ = mean
            self.oob_score_ = _m.score("classification", mean[seen].argmax(axis=1), y[seen]) if seen.any() else np.nan
        else:
            pred = mean[:, 0] if mean.shape[1] == 1 else mean
            self.oob_prediction_ = pred
            self.oob_score_ = _m.score("regression", pred[seen], y[seen]) if seen.any() else np.nan
