import numpy as np
import pytest

import fastnn
from fastnn import ensemble
from fastnn.ensemble import members as M

from . import builders
from .conftest import blobs


def _members(n):
    out = []
    for s in range(n):
        fastnn.manual_seed(7 + s)
        out.append(builders.small(h=4 + 4 * s))
    return out


def test_meta_features_are_out_of_fold_predictions(pool):
    X, y = blobs(120)
    members = _members(2)
    start = [fastnn.io.to_bytes(m) for m in members]
    st = ensemble.Stacking(members, cv=3, meta_epochs=30).fit(X, y, epochs=4, batch_size=16, lr=0.02, seed=3, executor=pool)
    folds = st.folds_
    assert sorted(np.concatenate(folds).tolist()) == list(range(120))  # a partition
    assert all(len(set(a) & set(b)) == 0 for i, a in enumerate(folds) for b in folds[i + 1:])
    seeds = M.member_seeds(3, 2 * 4)
    for j in range(2):
        for k, fold in enumerate(folds):
            keep = np.setdiff1d(np.arange(120), fold)
            copy = fastnn.io.from_bytes(start[j])  # the member trained without the fold it predicts
            fastnn.fit(copy, X[keep], y[keep], epochs=4, batch_size=16, lr=0.02, seed=seeds[j * 4 + k], verbose=0)
            expected = M.softmax(fastnn.predict(copy, X[fold]).astype(np.float64))
            np.testing.assert_allclose(st.oof_[fold, 3 * j:3 * j + 3], expected, rtol=1e-12, atol=1e-15)
    # in-fold predictions of the final members differ from the out-of-fold ones
    infold = np.concatenate([M.softmax(fastnn.predict(m, X).astype(np.float64)) for m in st.members_], 1)
    assert not np.allclose(infold, st.oof_)
    assert st.score(X, y) > 0.6
    assert st.predict_proba(X).shape == (120, 3)


def test_a_scikit_learn_meta_learner():
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, y = blobs(90)
    meta = linear_model.LogisticRegression()
    st = ensemble.Stacking(_members(2), meta_learner=meta, cv=3).fit(X, y, epochs=4, lr=0.02, executor="sequential")
    assert not hasattr(meta, "coef_")  # the given meta-learner is copied, not fitted
    np.testing.assert_array_equal(st.predict(X), st.meta_.predict(st._meta_features(X)))
    assert st.score(X, y) > 0.6
