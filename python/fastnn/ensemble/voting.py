"""Voting and averaging ensembles of models that differ in seed, hyperparameters or architecture."""

from .. import _validate as _v
from . import members as _m

__all__ = ["VotingClassifier", "AveragingRegressor"]


class VotingClassifier(_m.Combined):
    """Classifiers voting: "soft" averages their softmax probabilities, "hard" counts their labels.

    Args:
        members: fastnn models with one logit per class (trained by fit(), or already trained:
            ``prefit=True``).
        voting: "soft" or "hard"; weights: one non-negative weight per member (default equal).
    ``fit(X, y, seed=0, executor=None, **fit_params)`` trains the members in parallel (each with its
    own seed) through a tune executor: None is the local process pool, "sequential" this process.
    """

    task = "classification"

    def __init__(self, members, voting="soft", weights=None, prefit=False):
        self.members = _m.check_members(members, type(self).__name__)
        self.voting = _v.check_choice(voting, type(self).__name__, "voting", ("soft", "hard"))
        self.weights = weights
        _m.check_weights(weights, len(self.members), type(self).__name__)
        self.members_ = list(self.members) if _v.check_bool(prefit, type(self).__name__, "prefit") else None

    def fit(self, X, y, seed=0, executor=None, retries=1, **fit_params):
        fit_params.setdefault("loss", "cross_entropy" if self.task == "classification" else "mse")
        seeds = _m.member_seeds(_v.check_seed(seed, type(self).__name__), len(self.members))
        self.members_ = _m.train(executor, self.members, [(X, y)] * len(self.members), fit_params, seeds, retries,
                                 type(self).__name__)
        return self


class AveragingRegressor(VotingClassifier):
    """Regressors averaged (optionally weighted); members trained as in VotingClassifier (loss "mse")."""

    task = "regression"

    def __init__(self, members, weights=None, prefit=False):
        super().__init__(members, "soft", weights, prefit)
