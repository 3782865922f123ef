import math

import numpy as np

import fastnn
from fastnn import ensemble

from . import builders
from .conftest import blobs


def test_snapshots_are_taken_at_the_end_of_each_cosine_cycle():
    X, y = blobs(100)
    fastnn.manual_seed(0)
    model = builders.small()
    snap = ensemble.SnapshotEnsemble(model, n_snapshots=3, epochs_per_cycle=2, lr_max=0.2).fit(X, y, batch_size=10)
    lrs = snap.history_["lr"]
    assert lrs == [0.2 / 2 * (1 + math.cos(math.pi * (e % 2) / 2)) for e in range(6)]
    assert len(snap.members_) == 3
    np.testing.assert_array_equal(snap.members_[-1].flat_parameters(), model.flat_parameters())
    assert not np.array_equal(snap.members_[0].flat_parameters(), snap.members_[1].flat_parameters())
    assert snap.score(X, y) > 0.6
    probs = np.mean([ensemble.members.softmax(fastnn.predict(m, X).astype(np.float64)) for m in snap.members_], 0)
    np.testing.assert_allclose(snap.predict_proba(X), probs, rtol=1e-12, atol=1e-15)
