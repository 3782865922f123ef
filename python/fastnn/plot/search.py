"""A hyperparameter search's score scatter: one panel per hyperparameter, each trial's score
against its value (log axis for log-uniform ones), the best trial starred."""

import math

from ..tune import spaces as _spaces
from ..tune.search import SearchResult
from . import _figure

# The table's own columns; the others are the trials' hyperparameters.
_COLUMNS = ("trial", "round", "budget", "score", "status", "lost", "seconds")


def _is_search(r):
    if isinstance(r, SearchResult) or hasattr(r, "to_dict"):  # a SearchResult, or its table as a DataFrame
        return True
    return isinstance(r, list) and bool(r) and all(isinstance(row, dict) and "score" in row for row in r)


def _search(result):
    """(rows of the table, the space (None for a bare table), the best trial's number or None)."""
    if isinstance(result, SearchResult):
        table, space, best = result.table, result.space, result.best_trial["trial"]
    else:
        table, space, best = result, None, None
    rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    if best is None:  # a bare table: the best full-budget "ok" trial, by the larger score
        ok = [r for r in rows if r.get("status", "ok") == "ok" and _finite(r["score"])]
        top = max((r.get("budget", 0) for r in ok), default=0)
        ok = [r for r in ok if r.get("budget", 0) == top]
        best = max(ok, key=lambda r: r["score"])["trial"] if ok and "trial" in ok[0] else None
    return rows, space, best


def _finite(x):
    return _figure.is_number(x) and math.isfinite(x)


def _hyperparameters(searches):
    names = []
    for rows, space, _ in searches:
        if space is not None:
            found = [k for k, v in space.items() if isinstance(v, _spaces.Space)]
        else:
            found = [k for k in rows[0] if k not in _COLUMNS and len({repr(r.get(k)) for r in rows}) > 1]
        names += [k for k in found if k not in names]
    return names


def _axis(name, searches):
    """("log" | "linear" | "category", the categories in order of appearance)."""
    values = [r[name] for rows, _, _ in searches for r in rows if name in r]
    spaces = [s[name] for _, s, _ in searches if s is not None and name in s]
    if not all(_figure.is_number(v) for v in values):
        categories = []
        for v in values:
            if not any(v == c and type(v) is type(c) for c in categories):
                categories.append(v)
        return "category", categories
    if any(isinstance(s, _spaces.loguniform) for s in spaces):
        return "log", None
    # numbers from a choice or a bare table: a log axis when they span a decade or more (32, 128, 512)
    positive = [v for v in values if v > 0]
    if (all(isinstance(s, _spaces.choice) for s in spaces) and len(positive) == len(values) and positive
            and max(positive) / min(positive) >= 10):
        return "log", None
    return "linear", None


def _position(value, categories):
    if categories is None:
        return float(value)
    return next(i for i, c in enumerate(categories) if value == c and type(value) is type(c))


def search_scores(results, params=None, path=None, *, axes=None, title=None):
    """Score of every trial against each hyperparameter.

    Args:
        results: a ``fastnn.tune`` SearchResult (or its ``table``), or {name: result} to compare
            searches (grid, random, coarse-to-fine: one color each). A single coarse-to-fine
            result is colored by round. Trials stopped early by successive halving are hollow
            (their score is that of a smaller budget); failed trials are left out.
        params: the hyperparameters, one panel each (default: every one the space varies).
        path: write the figure there (Agg); axes: one Axes per hyperparameter to draw into.
    Returns:
        The matplotlib Figure.
    """
    fn = "search_scores"
    path = _figure.check_path(path, fn)
    named = _figure.named(results, _is_search, fn, "a fastnn.tune SearchResult")
    searches = [_search(r) for _, r in named]
    params = _hyperparameters(searches) if params is None else [params] if isinstance(params, str) else list(params)
    if not params:
        raise ValueError(f"fastnn.plot.{fn}: no hyperparameter varies in the search; pass params=")
    for p in params:
        if not any(p in rows[0] for rows, _, _ in searches):
            raise ValueError(f"fastnn.plot.{fn}: no search has the hyperparameter {p!r}")
    series = []  # (label, color, rows, best trial number)
    if len(searches) == 1 and len({r.get("round", 0) for r in searches[0][0]}) > 1:
        rows, _, best = searches[0]
        rounds = sorted({r.get("round", 0) for r in rows})
        for color, k in zip(_figure.colors(len(rounds)), rounds):
            series.append((f"round {k + 1}", color, [r for r in rows if r.get("round", 0) == k], best))
    else:
        for color, ((label, _), (rows, _, best)) in zip(_figure.colors(len(searches)), zip(named, searches)):
            series.append((label, color, rows, best))
    fig, panels = _figure.new_axes(fn, len(params), axes, path)
    for ax, name in zip(panels, params):
        scale, categories = _axis(name, searches)
        for label, color, rows, best in series:
            drawn = [r for r in rows if name in r and _finite(r["score"]) and r.get("status", "ok") in ("ok", "stopped")]
            for status, face in (("ok", color), ("stopped", "none")):
                part = [r for r in drawn if r.get("status", "ok") == status]
                if part:
                    what = f"{label}: " if label else ""
                    ax.scatter([_position(r[name], categories) for r in part], [r["score"] for r in part], s=24,
                               facecolors=face, edgecolors=color,
                               label=what + ("trials" if status == "ok" else "stopped early"))
            top = [r for r in drawn if r.get("trial") == best]
            if top:
                ax.scatter([_position(top[0][name], categories)], [top[0]["score"]], marker="*", s=200, color=color,
                           edgecolors="black", zorder=3, label=(f"{label}: " if label else "") + "best")
        if scale == "log":
            ax.set_xscale("log")
        if categories is not None:
            ax.set_xticks(range(len(categories)))
            ax.set_xticklabels([str(c) for c in categories])
            ax.set_xlim(-0.5, len(categories) - 0.5)
        ax.set_xlabel(name)
        ax.set_ylabel("score")
        ax.grid(alpha=0.3)
    panels[-1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the points
    return _figure.finish(fig, path, title, owned=axes is None)
