"""What every plot shares: matplotlib imported when a plot is drawn (never by ``import fastnn``),
axes given by the caller or a new figure, and the figure written to a file with Agg."""

import numbers
import os

import numpy as np


def matplotlib(fn):
    """The matplotlib module, or an ImportError that says how to install it."""
    try:
        import matplotlib as mpl
    except ImportError:
        raise ImportError(f"fastnn.plot.{fn} needs matplotlib, which is not installed: pip install matplotlib") from None
    return mpl


def new_axes(fn, n, given=None, path=None, ncols=None, size=(5.0, 3.6)):
    """(figure, [n axes]): the caller's axes (one Axes when n is 1, else a sequence of n), else a new
    figure of n panels in a row (or `ncols` columns). With a `path` and no axes the figure is a bare
    Figure on an Agg canvas: no window, nothing left open in pyplot; without a path it is a pyplot
    figure, which ``plt.show()`` or a notebook displays."""
    matplotlib(fn)
    if given is not None:
        axes = [given] if n == 1 and not isinstance(given, (list, tuple, np.ndarray)) else list(np.ravel(given))
        from matplotlib.axes import Axes

        if len(axes) != n or not all(isinstance(a, Axes) for a in axes):
            raise ValueError(f"fastnn.plot.{fn}: needs {n} matplotlib Axes to draw into, got {given!r:.80}")
        return axes[0].figure, axes
    ncols = min(n, ncols or n)
    nrows = -(-n // ncols)
    figsize = (size[0] * ncols, size[1] * nrows)
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
    else:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.ravel())
    for extra in axes[n:]:
        extra.set_visible(False)
    return fig, axes[:n]


def check_path(path, fn):
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"fastnn.plot.{fn}: path must be a file name, got {type(path).__name__}")
    return path


def finish(fig, path, title=None, owned=True):
    """Titles and lays out a figure this module made (the caller's own is left as laid out), writes
    it when `path` is given, and returns it."""
    if title is not None:
        fig.suptitle(str(title))
    if owned:
        fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def named(data, is_one, fn, what):
    """[(label, item)]: one `what` (label None) or a {label: item} dict of them."""
    if isinstance(data, dict) and data and not is_one(data):
        bad = [k for k, v in data.items() if not is_one(v)]
        if bad:
            raise TypeError(f"fastnn.plot.{fn}: {bad[0]!r} is not {what}")
        return [(str(k), v) for k, v in data.items()]
    if not is_one(data):
        raise TypeError(f"fastnn.plot.{fn}: expected {what} or a non-empty {{name: {what}}} dict, got "
                        f"{type(data).__name__}")
    return [(None, data)]


def colors(n):
    """n colors of matplotlib's default cycle (tab10), repeated past ten."""
    return [f"C{i % 10}" for i in range(n)]
