"""AdaBoost with neural base learners, multi-class: SAMME and SAMME.R (Zhu, Zou, Rosset & Hastie
2009, "Multi-class AdaBoost").

Round m trains a fresh member on the weighted data, then
    SAMME:   err = Σ w·[h(x) ≠ y] / Σ w,  α = lr·(log((1 − err)/err) + log(K − 1)),  w ← w·exp(α·[h(x) ≠ y])
             predict argmax_k Σ_m α_m·[h_m(x) = k]
    SAMME.R: p = the member's softmax probabilities (clipped at eps),
             h_k = (K − 1)·(log p_k − mean_j log p_j),  w ← w·exp(−lr·(K − 1)/K · Σ_k y_k log p_k)
             with y_k = 1 for the true class and −1/(K − 1) otherwise;  predict argmax_k Σ_m h_m,k(x)
Each member trains on ``fit(sample_weight=N·w)`` (boosting by reweighting: N·w keeps the mean
weight 1, so the learning rate means what it means without weights). Rounds are sequential: each
needs the weights of the one before.
"""

import numpy as np

from .. import _validate as _v
from ..nn.module import Module
from ..train.fit import fit as _fit
from ..tune import trial as _trial
from . import members as _m

__all__ = ["AdaBoost"]

EPS = 1e-12


class AdaBoost:
    """AdaBoost of members built by ``estimator()`` (after ``fastnn.manual_seed``), for classification.

    After fit: ``members_``, ``alphas_`` (SAMME's member weights; 1 for SAMME.R), ``errors_``
    (weighted training error of each member), ``sample_weights_`` (the weights each member trained
    with, each summing to 1).
    Training stops early when a member is perfect (err = 0) or no better than chance
    (err ≥ 1 − 1/K), as in SAMME; that member is kept only in the first case.
    """

    def __init__(self, estimator, n_estimators=10, algorithm="SAMME", learning_rate=1.0):
        fn = "AdaBoost"
        if not callable(estimator) or isinstance(estimator, Module):
            raise TypeError(f"{fn}: estimator must be a function returning a fresh fastnn model, got "
                            f"{type(estimator).__name__}")
        self.estimator = estimator
        self.n_estimators = _v.check_int(n_estimators, fn, "n_estimators", 1)
        self.algorithm = _v.check_choice(algorithm, fn, "algorithm", ("SAMME", "SAMME.R"))
        self.learning_rate = _v.check_real(learning_rate, fn, "learning_rate", 0, low_open=True)

    def fit(self, X, y, seed=0, **fit_params):
        fn = "AdaBoost"
        seed = _v.check_seed(seed, fn)
        X, y = np.asarray(X), np.asarray(y)
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(X) or len(y) == 0:
            raise ValueError(f"{fn}: y must be {len(X)} integer class labels, got shape {y.shape} dtype {y.dtype}")
        if "seed" in fit_params or "sample_weight" in fit_params:
            raise ValueError(f"{fn}: seed= goes to AdaBoost, and the sample weights are boosting's own")
        n, K = len(X), int(y.max()) + 1
        fit_params.setdefault("verbose", 0)
        w = np.full(n, 1.0 / n)
        self.n_classes_ = K
        self.members_, self.alphas_, self.errors_, self.sample_weights_ = [], [], [], []
        seeds = _m.member_seeds(seed, self.n_estimators)
        for m, s in enumerate(seeds):
            with _trial.seeded(s):
                model = self.estimator()
            _fit(model, X, y, sample_weight=w * n, seed=s, **fit_params)
            self.sample_weights_.append(w.copy())
            logits = _m.outputs([model], X)[0].astype(np.float64)
            miss = logits.argmax(axis=1) != y
            err = float(np.sum(w[miss]) / np.sum(w))
            self.errors_.append(err)
            if err >= 1 - 1 / K:  # no better than chance: SAMME stops without this member
                self.errors_.pop()
                self.sample_weights_.pop()
                break
            self.members_.append(model)
            if err <= 0:
                self.alphas_.append(1.0)
                break
            if self.algorithm == "SAMME":
                alpha = self.learning_rate * (np.log((1 - err) / err) + np.log(K - 1))
                self.alphas_.append(float(alpha))
                w = w * np.exp(alpha * miss)
            else:
                logp = np.log(np.clip(_m.softmax(logits), EPS, None))
                coded = np.full((n, K), -1.0 / (K - 1))
                coded[np.arange(n), y] = 1.0
                self.alphas_.append(1.0)
                w = w * np.exp(-self.learning_rate * (K - 1) / K * np.sum(coded * logp, axis=1))
            w = w / w.sum()
        if not self.members_:
            raise RuntimeError(f"{fn}: the first member is no better than chance (weighted error "
                               f"{self.errors_ and self.errors_[0]}); train it longer or use another model")
        return self

    def decision_function(self, X):
        """(N, K) class scores: Σ α_m·onehot(h_m(x)) (SAMME) or Σ_m h_m(x) (SAMME.R)."""
        if not getattr(self, "members_", None):
            raise RuntimeError("AdaBoost: call fit first")
        out = _m.outputs(self.members_, X).astype(np.float64)
        K = self.n_classes_
        scores = np.zeros((out.shape[1], K))
        for alpha, logits in zip(self.alphas_, out):
            if self.algorithm == "SAMME":
                scores[np.arange(len(logits)), logits.argmax(axis=1)] += alpha
            else:
                logp = np.log(np.clip(_m.softmax(logits), EPS, None))
                scores += (K - 1) * (logp - logp.mean(axis=1, keepdims=True))
        return scores

    def predict(self, X):
        return self.decision_function(X).argmax(axis=1)

    def score(self, X, y):
        return _m.score("classification", self.predict(X), y)

    def member_scores(self, X, y):
        return [_m.score("classification", o.argmax(axis=1), y) for o in _m.outputs(self.members_, X)]
