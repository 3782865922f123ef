import numpy as np
import pytest

import fastnn
from fastnn import ensemble, nn
from fastnn.ensemble import members as M

from .conftest import blobs


def weak():
    return nn.Sequential(nn.Linear(10, 2), nn.Tanh(), nn.Linear(2, 3))  # 2 hidden units: weak on the rings below


def curved(n=300, seed=0):
    X, y = blobs(n, seed=seed)
    r = np.linalg.norm(X[:, :2], axis=1)
    y = np.digitize(r, np.quantile(r, [1 / 3, 2 / 3]))  # rings: not linearly separable
    return X, y


@pytest.fixture(scope="module", params=["SAMME", "SAMME.R"])
def boosted(request):
    X, y = curved()
    ada = ensemble.AdaBoost(weak, n_estimators=8, algorithm=request.param)
    ada.fit(X, y, epochs=3, batch_size=32, lr=0.05, seed=1)
    return ada, X, y


def test_sample_weights_follow_the_samme_update(boosted):
    ada, X, y = boosted
    K, n = 3, len(X)
    assert len(ada.members_) >= 2, ada.errors_
    np.testing.assert_allclose(ada.sample_weights_[0], np.full(n, 1 / n))
    for m in range(len(ada.members_) - 1):
        w = ada.sample_weights_[m]
        logits = fastnn.predict(ada.members_[m], X).astype(np.float64)
        miss = logits.argmax(1) != y
        err = w[miss].sum()
        assert ada.errors_[m] == pytest.approx(err, rel=1e-12)
        if ada.algorithm == "SAMME":
            alpha = np.log((1 - err) / err) + np.log(K - 1)
            assert ada.alphas_[m] == pytest.approx(alpha, rel=1e-12)
            expected = w * np.exp(alpha * miss)
        else:
            p = np.clip(M.softmax(logits), 1e-12, None)
            coded = np.where(np.arange(K)[None] == y[:, None], 1.0, -1 / (K - 1))
            expected = w * np.exp(-(K - 1) / K * (coded * np.log(p)).sum(1))
        np.testing.assert_allclose(ada.sample_weights_[m + 1], expected / expected.sum(), rtol=1e-10, atol=1e-300)
        # misclassified samples gain weight relative to the ones the member got right
        ratio = ada.sample_weights_[m + 1] / w
        assert ratio[miss].min() > ratio[~miss].max() if ada.algorithm == "SAMME" else ratio[miss].mean() > ratio[~miss].mean()


def test_each_round_trains_on_its_weights(boosted):
    # member m is exactly fit(sample_weight=N·w_m) of a fresh model with that round's seed, and the
    # weights matter: without them round m >= 1 would give another model
    from fastnn.tune import trial
    ada, X, y = boosted
    seeds = M.member_seeds(1, ada.n_estimators)
    for m in range(1, len(ada.members_)):
        w = ada.sample_weights_[m]
        outputs = []
        for weights in (w * len(X), None):
            with trial.seeded(seeds[m]):
                model = weak()
            fastnn.fit(model, X, y, sample_weight=weights, seed=seeds[m], epochs=3, batch_size=32, lr=0.05, verbose=0)
            outputs.append(fastnn.predict(model, X))
        np.testing.assert_array_equal(outputs[0], fastnn.predict(ada.members_[m], X))
        assert not np.array_equal(outputs[1], outputs[0])


def test_the_boosted_ensemble_beats_its_members(boosted):
    ada, X, y = boosted
    members = ada.member_scores(X, y)  # later members specialize on the hard samples: worse alone
    assert ada.score(X, y) > np.mean(members) + 0.05, (ada.score(X, y), members)
    scores = ada.decision_function(X)
    np.testing.assert_array_equal(ada.predict(X), scores.argmax(1))
    if ada.algorithm == "SAMME":
        np.testing.assert_allclose(scores.sum(1), sum(ada.alphas_))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="algorithm"):
        ensemble.AdaBoost(weak, algorithm="M1")
    with pytest.raises(TypeError, match="function returning"):
        ensemble.AdaBoost(weak())
    with pytest.raises(ValueError, match="integer class labels"):
        ensemble.AdaBoost(weak).fit(np.zeros((4, 10), np.float32), np.zeros(4))
