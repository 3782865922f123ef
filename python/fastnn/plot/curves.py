"""Training curves: one panel per metric, the training value and its ``val_`` twin side by side
(solid and dashed, one color per run)."""

import numpy as np

from . import _figure

# Bookkeeping, not learning curves: drawn only when asked for by name.
_NOT_DEFAULT = ("lr", "seconds")


def _is_history(h):
    return hasattr(h, "history") and hasattr(h, "epoch") and isinstance(h.history, dict)


def _is_metric_dict(h):  # Keras users pass ``history.history``: {metric: [one value per epoch]}
    return (isinstance(h, dict) and bool(h) and all(isinstance(k, str) for k in h)
            and all(isinstance(v, (list, tuple, np.ndarray)) for v in h.values()))


def _is_run(h):
    return _is_history(h) or _is_metric_dict(h)


def _metrics(run, fn):
    """(epoch numbers from 1, {metric: values}) of a History or a {metric: values} dict."""
    metrics = {k: [float(x) for x in v] for k, v in (run.history if _is_history(run) else run).items()}
    n = max((len(v) for v in metrics.values()), default=0)
    if n == 0:
        raise ValueError(f"fastnn.plot.{fn}: the history has no epochs to plot")
    epochs = [e + 1 for e in run.epoch] if _is_history(run) and len(run.epoch) == n else list(range(1, n + 1))
    return epochs, metrics


def _default_keys(runs):
    keys = []
    for _, (_, metrics) in runs:
        for k in metrics:
            base = k[4:] if k.startswith("val_") else k
            if base not in keys and base not in _NOT_DEFAULT:
                keys.append(base)
    return keys


def curves(histories, keys=None, path=None, *, axes=None, title=None):
    """Learning curves of one run or several.

    Args:
        histories: a History (what ``fit`` returns), its ``.history`` dict, or {name: History} to
            compare runs (one color each).
        keys: the metrics, one panel each (default: every metric but lr and seconds, e.g. loss and
            accuracy); a panel for "loss" also draws "val_loss" (dashed) where the run has it; a
            "val_..." key draws that one alone.
        path: write the figure to this file (Agg; no window is opened).
        axes: matplotlib Axes to draw into, one per key (default: a new figure).
        title: the figure's title.
    Returns:
        The matplotlib Figure.
    """
    fn = "curves"
    path = _figure.check_path(path, fn)
    runs = [(label, _metrics(run, fn)) for label, run in _figure.named(histories, _is_run, fn, "a History")]
    keys = _default_keys(runs) if keys is None else [keys] if isinstance(keys, str) else list(keys)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"fastnn.plot.{fn}: keys must be metric names, got {keys!r}")
    known = sorted({k for _, (_, m) in runs for k in m})
    for k in keys:
        if not any(k in m or f"val_{k}" in m for _, (_, m) in runs):
            raise ValueError(f"fastnn.plot.{fn}: no history has the metric {k!r}; they have {known}")
    fig, panels = _figure.new_axes(fn, len(keys), axes, path)
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    marker = "o" if max(len(e) for _, (e, _) in runs) <= 15 else None
    styles = set()
    for ax, key in zip(panels, keys):
        for color, (label, (epochs, metrics)) in zip(_figure.colors(len(runs)), runs):
            prefix = f"{label}: " if label is not None else ""
            for name, style, what in ((key, "-", "train"), (f"val_{key}", "--", "validation")):
                if name not in metrics or (key.startswith("val_") and name != key):
                    continue
                values = metrics[name]
                what = what if not key.startswith("val_") else key
                ax.plot(epochs[:len(values)], values, style, color=color, marker=marker, markersize=3, label=prefix + what)
                styles.add((style, what))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if len(runs) == 1:
            ax.legend(fontsize="small")
    if len(runs) > 1:  # one entry per run (its color) and one per line style, beside the last panel
        handles = [Line2D([], [], color=c, label=label) for c, (label, _) in zip(_figure.colors(len(runs)), runs)]
        handles += [Line2D([], [], color="black", linestyle=style, label=what) for style, what in sorted(styles)]
        panels[-1].legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _figure.finish(fig, path, title, owned=axes is None)
