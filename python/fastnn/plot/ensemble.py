"""An ensemble against its members: each member's score as a grey bar, the ensemble's as a colored
one beside them, the members' mean as a dashed line across the group; one group per ensemble."""

import numpy as np

from ..ensemble import members as _members
from ..train.fit import predict as _predict
from . import _figure


def _is_pair(e):
    return (isinstance(e, tuple) and len(e) == 2 and _figure.is_number(e[1])
            and isinstance(e[0], (list, tuple, np.ndarray)) and len(e[0]) > 0
            and all(_figure.is_number(s) for s in e[0]))


def _is_ensemble(e):
    return _is_pair(e) or (hasattr(e, "score") and hasattr(e, "members_"))


def _member_scores(ensemble, X, y):
    """Each member alone, in the measure of the ensemble's score (Stacking has no member_scores)."""
    if hasattr(ensemble, "member_scores"):
        return list(ensemble.member_scores(X, y))
    task = getattr(ensemble, "task", "classification")
    scores = []
    for m in ensemble.members_:
        out = _predict(m, X).reshape(len(X), -1)
        scores.append(_members.score(task, out.argmax(axis=1) if task == "classification" else
                                     out[:, 0] if out.shape[1] == 1 else out, y))
    return scores


def _scores(ensemble, X, y, fn):
    if _is_pair(ensemble):
        return [float(s) for s in ensemble[0]], float(ensemble[1])
    if X is None or y is None:
        raise ValueError(f"fastnn.plot.{fn}: give X and y to score fitted ensembles (or pass "
                         "(member scores, ensemble score) pairs)")
    return _member_scores(ensemble, X, y), float(ensemble.score(X, y))


def ensemble_scores(ensembles, X=None, y=None, path=None, *, ax=None, title=None, ylabel="accuracy"):
    """The ensemble's score beside its members'.

    Args:
        ensembles: a fitted fastnn.ensemble (VotingClassifier, AveragingRegressor, Bagging,
            SnapshotEnsemble, Stacking, AdaBoost), or a (member scores, ensemble score) pair, or
            {name: either} to compare ensembles side by side.
        X, y: the data fitted ensembles are scored on (a held-out set; not needed for pairs).
        path: write the figure there (Agg); ax: an Axes to draw into.
        ylabel: what the score is (accuracy; R² for regressors).
    Returns:
        The matplotlib Figure.
    """
    fn = "ensemble_scores"
    path = _figure.check_path(path, fn)
    groups = [(label, *_scores(e, X, y, fn))
              for label, e in _figure.named(ensembles, _is_ensemble, fn, "a fitted ensemble or a (members, score) pair")]
    fig, (panel,) = _figure.new_axes(fn, 1, ax, path, size=(max(5.0, 1.2 + 0.45 * sum(len(m) + 2 for _, m, _ in groups)), 3.6))
    x, ticks, labels = 0.0, [], []
    for color, (label, members, ensemble) in zip(_figure.colors(len(groups)), groups):
        positions = x + np.arange(len(members))
        panel.bar(positions, members, width=0.8, color="lightgrey", edgecolor="grey",
                  label="members" if x == 0 else None)
        panel.bar(x + len(members), ensemble, width=0.8, color=color, label=f"{label or 'ensemble'}")
        panel.hlines(np.mean(members), x - 0.4, x + len(members) + 0.4, colors="black", linestyles="dashed",
                     label="mean member" if x == 0 else None)
        panel.annotate(f"{ensemble:.4f}", (x + len(members), ensemble), ha="center", va="bottom", fontsize="small")
        ticks.append(x + len(members) / 2)
        labels.append(label or "ensemble")
        x += len(members) + 2
    every = [s for _, m, e in groups for s in (*m, e)]
    low, high = min(every), max(every)
    spread = (high - low) or abs(high) * 0.05 or 0.05
    panel.set_ylim(low - 1.5 * spread, high + 0.5 * spread)  # the differences are what matters, not the bars' length
    panel.set_xticks(ticks)
    panel.set_xticklabels(labels)
    panel.set_ylabel(ylabel)
    panel.grid(alpha=0.3, axis="y")
    panel.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, not on them
    return _figure.finish(fig, path, title, owned=ax is None)
