"""Stacking (Wolpert 1992): a meta-learner combines the members' predictions, fitted on
out-of-fold predictions (each sample predicted by member copies that never trained on it), so it
learns how the members generalize rather than how well they memorized."""

import numpy as np

from .. import _validate as _v
from .. import io as _io
from .. import nn as _nn
from ..train.fit import fit as _fit
from ..train.fit import predict as _predict
from . import members as _m

__all__ = ["Stacking"]


class Stacking:
    """Members, and a meta-learner fitted on their out-of-fold predictions.

    fit trains, for each member and each of the ``cv`` folds, a copy of the (untrained) member on
    the other folds and predicts the fold (``oof_``: (N, members·outputs), softmax probabilities for
    classification); then the members on all of (X, y), in parallel on the executor. The
    meta-learner is a fastnn model (default: a linear layer, i.e. multinomial logistic or linear
    regression, trained with Adam) or any object with scikit-learn's fit/predict(/predict_proba).

    After fit: ``members_``, ``meta_``, ``oof_``, ``folds_`` (each fold's sample indices).
    """

    def __init__(self, members, meta_learner=None, cv=5, task="classification", meta_epochs=100):
        fn = "Stacking"
        self.members = _m.check_members(members, fn)
        self.meta_learner = meta_learner
        self.cv = _v.check_int(cv, fn, "cv", 2)
        self.task = _m.check_task(task, fn)
        self.meta_epochs = _v.check_int(meta_epochs, fn, "meta_epochs", 1)

    def _features(self, outputs):
        """(members, N, K) outputs -> (N, members·K) meta features."""
        if self.task == "classification":
            outputs = _m.softmax(outputs.astype(np.float64))
        return np.concatenate(list(outputs), axis=1)

    def fit(self, X, y, seed=0, executor=None, retries=1, **fit_params):
        fn = "Stacking"
        seed = _v.check_seed(seed, fn)
        X, y = np.asarray(X), np.asarray(y)
        n = len(X)
        if len(y) != n or n < self.cv:
            raise ValueError(f"{fn}: X and y must have the same length, at least cv={self.cv}; got {len(X)} and {len(y)}")
        order = np.random.default_rng([seed, 9]).permutation(n)
        self.folds_ = [np.sort(f) for f in np.array_split(order, self.cv)]
        fit_params.setdefault("loss", "cross_entropy" if self.task == "classification" else "mse")
        models, datasets = [], []
        for member in self.members:
            for fold in self.folds_:
                keep = np.ones(n, bool)
                keep[fold] = False
                models.append(member)
                datasets.append((X[keep], y[keep]))
            models.append(member)
            datasets.append((X, y))
        seeds = _m.member_seeds(seed, len(models))
        trained = _m.train(executor, models, datasets, fit_params, seeds, retries, fn)
        per = self.cv + 1
        self.members_ = [trained[j * per + self.cv] for j in range(len(self.members))]
        oof = None
        for j in range(len(self.members)):
            for k, fold in enumerate(self.folds_):
                out = _predict(trained[j * per + k], X[fold]).reshape(len(fold), -1)
                if oof is None:
                    oof = np.empty((len(self.members), n, out.shape[1]))
                oof[j, fold] = out
        self.oof_ = self._features(oof)
        self.meta_ = self._fit_meta(self.oof_, y, seed)
        return self

    def _fit_meta(self, F, y, seed):
        meta = self.meta_learner
        if meta is None:
            width = int(y.max()) + 1 if self.task == "classification" else (1 if y.ndim == 1 else y.shape[1])
            meta = _nn.Sequential(_nn.Linear(F.shape[1], width))
        if isinstance(meta, _nn.Module):
            meta = _io.from_bytes(_io.to_bytes(meta))  # a fresh copy: the given model is left as it is
            target = y if self.task == "classification" else y.reshape(len(y), -1)
            _fit(meta, F, target, loss="cross_entropy" if self.task == "classification" else "mse",
                 optimizer="adam", lr=0.01, epochs=self.meta_epochs, batch_size=min(len(F), 256), seed=seed, verbose=0)
            return meta
        import copy

        meta = copy.deepcopy(meta)
        meta.fit(F, y)
        return meta

    def _meta_features(self, X):
        if not getattr(self, "members_", None):
            raise RuntimeError("Stacking: call fit first")
        return self._features(_m.outputs(self.members_, X))

    def predict_proba(self, X):
        if self.task != "classification":
            raise ValueError("Stacking.predict_proba: a regression ensemble has no probabilities")
        F = self._meta_features(X)
        if isinstance(self.meta_, _nn.Module):
            return _m.softmax(_predict(self.meta_, F).astype(np.float64))
        return self.meta_.predict_proba(F)

    def predict(self, X):
        if self.task == "classification":
            if isinstance(self.meta_, _nn.Module):
                return self.predict_proba(X).argmax(axis=1)
            return self.meta_.predict(self._meta_features(X))
        F = self._meta_features(X)
        out = _predict(self.meta_, F) if isinstance(self.meta_, _nn.Module) else self.meta_.predict(F)
        out = np.asarray(out, np.float64)
        return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out

    def score(self, X, y):
        return _m.score(self.task, self.predict(X), y)
