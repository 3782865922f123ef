"""Plots (matplotlib, an optional dependency imported only when a plot is drawn: ``pip install
matplotlib``). Each function returns the matplotlib Figure, draws into the caller's axes when
given (``ax=`` / ``axes=``), and writes a file when given ``path=`` (with Agg: no window opens).

    fastnn.plot.curves(history, path="curves.png")                      # or {name: History}
    stats = {name: fastnn.train.layer_statistics(model, X[:512], y[:512]) for name, model in models.items()}
    fastnn.plot.activation_histograms(stats), fastnn.plot.gradient_histograms(stats), fastnn.plot.gradient_norms(stats)
    fastnn.plot.search_scores({"random": r1, "grid": r2})               # fastnn.tune results
    fastnn.plot.ensemble_scores({"voting": vote, "bagging": bag}, X_test, y_test)
"""

from .curves import curves
from .ensemble import ensemble_scores
from .layer_statistics import activation_histograms, gradient_histograms, gradient_norms
from .search import search_scores

__all__ = ["activation_histograms", "curves", "ensemble_scores", "gradient_histograms", "gradient_norms",
           "search_scores"]
