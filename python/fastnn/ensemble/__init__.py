"""Ensembles of fastnn models: voting, averaging, bagging (with out-of-bag score), stacking on
out-of-fold predictions, AdaBoost (SAMME, SAMME.R), and snapshot ensembles of one cyclic-lr run.

    ens = fastnn.ensemble.VotingClassifier([make_mlp(seed) for seed in range(5)])
    ens.fit(X, y, epochs=5, batch_size=64)     # members train in parallel on the local process pool
    ens.score(X_test, y_test), ens.member_scores(X_test, y_test)

Members cross to worker processes as fastnn model bytes (never pickled objects); predictions run
one batched C++ pass per member (fastnn.predict) and are combined in NumPy.
"""

from .bagging import Bagging
from .boosting import AdaBoost
from .snapshot import SnapshotCallback, SnapshotEnsemble
from .stacking import Stacking
from .voting import AveragingRegressor, VotingClassifier

__all__ = ["AdaBoost", "AveragingRegressor", "Bagging", "SnapshotCallback", "SnapshotEnsemble", "Stacking", "VotingClassifier"]
