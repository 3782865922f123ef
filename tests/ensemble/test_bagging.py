import numpy as np
import pytest

import fastnn
from fastnn import ensemble
from fastnn.ensemble import members as M

from . import builders
from .conftest import blobs


@pytest.fixture(scope="module")
def bagged(pool):
    X, y = blobs(150)
    bag = ensemble.Bagging(builders.small, n_estimators=6).fit(X, y, epochs=3, batch_size=16, seed=2, executor=pool)
    return bag, X, y


def test_bootstrap_samples_with_replacement_and_each_member_trains_on_its_own(bagged):
    bag, X, y = bagged
    n = len(X)
    assert len(bag.estimators_samples_) == 6
    out_fractions = []
    for idx in bag.estimators_samples_:
        assert len(idx) == n and idx.min() >= 0 and idx.max() < n
        assert len(np.unique(idx)) < n  # drawn with replacement: duplicates
        out_fractions.append(1 - len(np.unique(idx)) / n)
    assert abs(np.mean(out_fractions) - (1 - 1 / np.e)) < 0.06 or abs(np.mean(out_fractions) - 1 / np.e) < 0.06
    assert len({tuple(i) for i in bag.estimators_samples_}) == 6
    # member 0 is what training a model from estimator() on its bootstrap sample gives
    seeds = M.member_seeds(2, 6)
    fastnn.manual_seed(seeds[0])
    alone = builders.small()
    idx = bag.estimators_samples_[0]
    fastnn.fit(alone, X[idx], y[idx], epochs=3, batch_size=16, seed=seeds[0], verbose=0)
    np.testing.assert_array_equal(alone.flat_parameters(), bag.members_[0].flat_parameters())


def test_oob_score_uses_only_members_that_did_not_see_the_sample(bagged):
    bag, X, y = bagged
    probs = [M.softmax(fastnn.predict(m, X).astype(np.float64)) for m in bag.members_]
    for i in range(len(X)):
        outside = [p[i] for p, idx in zip(probs, bag.estimators_samples_) if i not in set(idx)]
        if outside:
            np.testing.assert_allclose(bag.oob_decision_function_[i], np.mean(outside, 0), rtol=1e-12, atol=1e-15)
        else:
            assert np.all(np.isnan(bag.oob_decision_function_[i]))
    seen = bag.oob_count_ > 0
    expected = np.mean(np.nanargmax(bag.oob_decision_function_[seen], 1) == y[seen])
    assert bag.oob_score_ == pytest.approx(expected)
    assert 0.5 < bag.oob_score_ <= 1.0


def test_without_bootstrap_samples_are_distinct(pool):
    X, y = blobs(60)
    bag = ensemble.Bagging(builders.small, n_estimators=2, max_samples=0.5, bootstrap=False, oob_score=True)
    bag.fit(X, y, epochs=1, executor="sequential")
    for idx in bag.estimators_samples_:
        assert len(idx) == 30 and len(np.unique(idx)) == 30
    with pytest.raises(ValueError, match="needs bootstrap=True"):
        ensemble.Bagging(builders.small, max_samples=2.0, bootstrap=False)
    with pytest.raises(TypeError, match="function returning"):
        ensemble.Bagging(builders.small())
