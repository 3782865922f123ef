import numpy as np
import pytest

import fastnn
from fastnn import ensemble, nn
from fastnn.ensemble import members as M

from . import builders
from .conftest import blobs


def _members(build, n):
    out = []
    for s in range(n):
        fastnn.manual_seed(100 + s)
        out.append(build())
    return out


def test_five_members_beat_their_mean_member_on_fashion_mnist(pool, fashion):
    X, y, Xt, yt = fashion
    ens = ensemble.VotingClassifier(_members(builders.fashion_mlp, 5)).fit(X, y, epochs=3, batch_size=64, executor=pool)
    members = ens.member_scores(Xt, yt)
    assert len(members) == 5 and len({round(m, 4) for m in members}) > 1  # different seeds, different members
    assert ens.score(Xt, yt) > np.mean(members) + 0.005, (ens.score(Xt, yt), members)


def test_soft_and_hard_voting_combine_the_members_outputs():
    X, y = blobs()
    models = _members(builders.small, 3)
    soft = ensemble.VotingClassifier(models, prefit=True)
    logits = np.stack([fastnn.predict(m, X).astype(np.float64) for m in models])
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(soft.predict_proba(X), probs.mean(0), rtol=1e-12, atol=1e-15)
    weighted = ensemble.VotingClassifier(models, weights=[2, 1, 1], prefit=True)
    np.testing.assert_allclose(weighted.predict_proba(X), (2 * probs[0] + probs[1] + probs[2]) / 4, rtol=1e-12,
                               atol=1e-15)
    hard = ensemble.VotingClassifier(models, voting="hard", prefit=True)
    labels = logits.argmax(-1)
    expected = np.array([np.bincount(labels[:, i], minlength=3).argmax() for i in range(len(X))])
    np.testing.assert_array_equal(hard.predict(X), expected)
    np.testing.assert_allclose(hard.predict_proba(X).sum(1), 1.0)


def test_members_train_in_parallel_as_they_would_alone(pool):
    X, y = blobs()
    models = _members(builders.small, 2)
    start = [fastnn.io.to_bytes(m) for m in models]
    ens = ensemble.VotingClassifier(models).fit(X, y, epochs=2, batch_size=16, seed=4, executor=pool)
    seeds = M.member_seeds(4, 2)
    for i in range(2):
        alone = fastnn.io.from_bytes(start[i])
        fastnn.fit(alone, X, y, epochs=2, batch_size=16, seed=seeds[i], verbose=0)
        np.testing.assert_array_equal(alone.flat_parameters(), ens.members_[i].flat_parameters())


def test_averaging_regressor_is_the_mean_of_its_members(pool):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 5)).astype(np.float32)
    y = (X @ rng.normal(size=5)).astype(np.float32)
    models = _members(lambda: nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)), 3)
    ens = ensemble.AveragingRegressor(models).fit(X, y[:, None], epochs=20, batch_size=16, lr=0.01, executor=pool)
    outs = np.stack([fastnn.predict(m, X)[:, 0].astype(np.float64) for m in ens.members_])
    np.testing.assert_allclose(ens.predict(X), outs.mean(0), rtol=1e-12, atol=1e-12)
    assert ens.score(X, y) > 0.5  # R²: the members learned a linear function
    with pytest.raises(ValueError, match="no probabilities"):
        ens.predict_proba(X)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="members must be"):
        ensemble.VotingClassifier([])
    with pytest.raises(ValueError, match="voting"):
        ensemble.VotingClassifier(_members(builders.small, 1), voting="mean")
    with pytest.raises(ValueError, match="weights must be 2"):
        ensemble.VotingClassifier(_members(builders.small, 2), weights=[1])
    with pytest.raises(RuntimeError, match="call fit first"):
        ensemble.VotingClassifier(_members(builders.small, 1)).predict(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match="seed= goes to the ensemble"):
        ensemble.VotingClassifier(_members(builders.small, 1)).fit(*blobs(), executor="sequential", seed=1, verbose=1)
