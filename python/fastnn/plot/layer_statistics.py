"""The vanishing-gradient picture (seed 002; Glorot & Bengio 2010) from
``fastnn.train.layer_statistics``: each layer's output histogram, and the gradient norm per layer
from the input side to the output side, for one model or several compared."""

import numpy as np

from . import _figure


def _is_stats(s):
    return isinstance(s, list) and bool(s) and all(isinstance(r, dict) and "histogram" in r for r in s)


_WHAT = "a fastnn.train.layer_statistics result"


def _select(records, layers, fn):
    """The records drawn: `layers` (names), else the nonlinearities' (all when there are none)."""
    if layers is None:
        chosen = [r for r in records if r["activation"]]
        return chosen or list(records)
    names = [layers] if isinstance(layers, str) else list(layers)
    by_name = {r["name"]: r for r in records}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"fastnn.plot.{fn}: no layer named {missing[0]!r}; the layers are {list(by_name)}")
    return [by_name[n] for n in names]


def _histograms(fn, stats, key, layers, path, axes, title, xlabel, default_title):
    path = _figure.check_path(path, fn)
    runs = _figure.named(stats, _is_stats, fn, _WHAT)
    chosen = [(label, _select(records, layers, fn)) for label, records in runs]
    fig, panels = _figure.new_axes(fn, len(runs), axes, path)
    for ax, (label, records) in zip(panels, chosen):
        for color, r in zip(_figure.colors(len(records)), records):
            counts, edges = r[key]
            total = counts.sum()
            ax.stairs(counts / total if total else counts.astype(float), edges, color=color,
                      label=f"{r['name']} {r['type']}" + (f" (mean {r['mean']:.2g}, std {r['std']:.2g})"
                                                            if key == "histogram" else ""))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of values")
        ax.set_title(label if label is not None else default_title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    return _figure.finish(fig, path, title, owned=axes is None)


def activation_histograms(stats, layers=None, path=None, *, axes=None, title=None):
    """Histograms of the layers' outputs, one panel per model, one line per layer (the fraction of
    the batch's output values in each bin, over that layer's range). Sigmoids that saturate pile
    up at 0 and 1.

    Args:
        stats: what ``fastnn.train.layer_statistics`` returns, or {name: that} to compare models
            (e.g. sigmoid + N(0, 1) against He + ReLU / ELU).
        layers: names of the layers to draw (default: the nonlinearities' outputs, or every layer
            of a model without any).
        path: write the figure there (Agg); axes: one Axes per model to draw into.
    Returns:
        The matplotlib Figure.
    """
    return _histograms("activation_histograms", stats, "histogram", layers, path, axes, title, "output value",
                       "layer outputs")


def gradient_histograms(stats, layers=None, path=None, *, axes=None, title=None):
    """Histograms of log10 |∂L/∂output| of the layers, one panel per model, one line per layer:
    vanishing gradients shift to the left layer by layer toward the input. Arguments as
    :func:`activation_histograms`."""
    return _histograms("gradient_histograms", stats, "grad_log10_histogram", layers, path, axes, title,
                       "log10 |∂L/∂output|", "back-propagated gradients")


def gradient_norms(stats, which="weight", path=None, *, ax=None, title=None):
    """Gradient norm per layer, input side on the left, log scale: one line per model. Vanishing
    gradients fall toward the left (the lower layers learn slowly); exploding ones rise.

    Args:
        stats: a ``fastnn.train.layer_statistics`` result or {name: result}.
        which: "weight" (‖∂L/∂W‖ of each layer with a weight) or "output" (‖∂L/∂h‖, the gradient
            back-propagated to each nonlinearity's output, or every layer's without any).
        path: write the figure there (Agg); ax: an Axes to draw into.
    Returns:
        The matplotlib Figure.
    """
    fn = "gradient_norms"
    path = _figure.check_path(path, fn)
    if which not in ("weight", "output"):
        raise ValueError(f"fastnn.plot.{fn}: which must be 'weight' or 'output', got {which!r}")
    runs = _figure.named(stats, _is_stats, fn, _WHAT)
    fig, (panel,) = _figure.new_axes(fn, 1, ax, path)
    depth = 0
    for color, (label, records) in zip(_figure.colors(len(runs)), runs):
        if which == "weight":
            records = [r for r in records if r["weight_grad_norm"] is not None]
            norms = [r["weight_grad_norm"] for r in records]
        else:
            records = _select(records, None, fn)
            norms = [r["grad_output_norm"] for r in records]
        if not records:
            raise ValueError(f"fastnn.plot.{fn}: {label or 'the model'} has no layer with a weight")
        depth = max(depth, len(norms))
        positive = [n if n > 0 else np.nan for n in norms]  # a zero gradient has no place on a log axis
        panel.plot(np.arange(1, len(norms) + 1), positive, "-o", color=color, label=label)
    panel.set_yscale("log")
    panel.set_xticks(np.arange(1, depth + 1))
    panel.set_xlabel("layer with a weight (input side = 1)" if which == "weight" else "layer (input side = 1)")
    panel.set_ylabel("‖∂L/∂W‖" if which == "weight" else "‖∂L/∂output‖")
    panel.grid(alpha=0.3, which="both")
    if any(label is not None for label, _ in runs):
        panel.legend(fontsize="small")
    return _figure.finish(fig, path, title, owned=ax is None)
