"""fastnn.plot: the artists each function draws (how many lines, points and bars, and their data),
files written with Agg, the caller's axes, and a clear error without matplotlib."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import nn, plot, tune
from fastnn.train import History, layer_statistics

from .tune import objectives as obj


@pytest.fixture
def plt():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as pyplot

    yield pyplot
    pyplot.close("all")


def _history(loss, acc, val_loss=None, val_acc=None, start=0):
    h = History()
    for i in range(len(loss)):
        logs = {"loss": loss[i], "accuracy": acc[i], "lr": 0.1, "seconds": 1.0}
        if val_loss is not None:
            logs.update(val_loss=val_loss[i], val_accuracy=val_acc[i])
        h.append(start + i, logs)
    return h


def _lines(ax):
    return [(tuple(line.get_xdata()), tuple(line.get_ydata()), line.get_linestyle(), line.get_color())
            for line in ax.get_lines()]


def test_curves_draw_train_and_validation_side_by_side_per_metric(plt):
    h = _history([1.0, 0.6, 0.4], [0.5, 0.7, 0.8], [1.1, 0.8, 0.7], [0.45, 0.6, 0.65])
    fig = plot.curves(h)
    loss_ax, acc_ax = fig.axes  # lr and seconds are not learning curves
    assert (loss_ax.get_ylabel(), acc_ax.get_ylabel()) == ("loss", "accuracy")
    (x, train, style, color), (x2, val, style2, color2) = _lines(loss_ax)
    assert x == x2 == (1, 2, 3) and train == (1.0, 0.6, 0.4) and val == (1.1, 0.8, 0.7)
    assert (style, style2) == ("-", "--") and color == color2
    assert [t[1] for t in _lines(acc_ax)] == [(0.5, 0.7, 0.8), (0.45, 0.6, 0.65)]
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["train", "validation"]


def test_curves_compare_runs_one_color_each(plt):
    runs = {"plain": _history([1.0, 0.5], [0.5, 0.6], [1.0, 0.9], [0.5, 0.55]),
            "dropout": _history([1.2, 0.7], [0.4, 0.5])}  # no validation data
    fig = plot.curves(runs, keys=["loss"])
    (ax,) = fig.axes
    lines = _lines(ax)
    assert len(lines) == 3
    assert [t[1] for t in lines] == [(1.0, 0.5), (1.0, 0.9), (1.2, 0.7)]
    assert lines[0][3] == lines[1][3] != lines[2][3]
    assert [line.get_label() for line in ax.get_lines()] == ["plain: train", "plain: validation", "dropout: train"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain", "dropout", "train", "validation"]


def test_curves_take_keras_dicts_resumed_epochs_and_explicit_keys(plt):
    fig = plot.curves({"loss": [3.0, 2.0], "val_loss": [3.5, 2.5]})
    assert [t[:2] for t in _lines(fig.axes[0])] == [((1, 2), (3.0, 2.0)), ((1, 2), (3.5, 2.5))]
    resumed = _history([0.5, 0.4], [0.8, 0.9], start=5)  # fit(initial_epoch=5)
    assert _lines(plot.curves(resumed, "accuracy").axes[0])[0][0] == (6, 7)
    fig = plot.curves(_history([1.0, 0.5], [0.5, 0.6], [1.0, 0.9], [0.5, 0.55]), keys=["val_accuracy", "lr"])
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 1]
    assert _lines(fig.axes[0])[0][1] == (0.5, 0.55) and _lines(fig.axes[1])[0][1] == (0.1, 0.1)


def test_curves_errors_name_the_problem(plt):
    h = _history([1.0], [0.5])
    with pytest.raises(ValueError, match=r"no history has the metric 'top5'; they have \['accuracy', 'loss', 'lr'"):
        plot.curves(h, keys=["top5"])
    with pytest.raises(ValueError, match="no epochs"):
        plot.curves(History())
    with pytest.raises(TypeError, match="expected a History"):
        plot.curves([1, 2, 3])
    with pytest.raises(TypeError, match="'b' is not a History"):
        plot.curves({"a": h, "b": 3})
    with pytest.raises(TypeError, match="path must be a file name"):
        plot.curves(h, path=3)


def test_a_path_writes_a_png_with_agg_and_leaves_no_pyplot_figure(plt, tmp_path):
    open_before = plt.get_fignums()
    path = tmp_path / "curves.png"
    fig = plot.curves(_history([1.0, 0.5], [0.5, 0.6]), path=str(path), title="run")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == open_before
    assert type(fig.canvas).__name__ == "FigureCanvasAgg" and fig._suptitle.get_text() == "run"


def test_the_callers_axes_are_drawn_into(plt):
    fig, axes = plt.subplots(1, 3)
    out = plot.curves(_history([1.0, 0.5], [0.5, 0.6]), ["loss", "accuracy"], axes=axes[1:])
    assert out is fig and len(axes[0].get_lines()) == 0 and len(axes[1].get_lines()) == len(axes[2].get_lines()) == 1
    with pytest.raises(ValueError, match="needs 2 matplotlib Axes"):
        plot.curves(_history([1.0, 0.5], [0.5, 0.6]), ["loss", "accuracy"], axes=axes[0])


def test_import_fastnn_does_not_import_matplotlib_and_plots_say_how_to_install_it():
    code = ("import sys; sys.modules['matplotlib'] = None\n"  # as if it were not installed
            "import fastnn\n"
            "from fastnn.train import History\n"
            "h = History(); h.append(0, {'loss': 1.0})\n"
            "try:\n    fastnn.plot.curves(h)\nexcept ImportError as e:\n    print(e)\n")
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths)))
    assert out.returncode == 0, out.stderr
    assert "fastnn.plot.curves needs matplotlib, which is not installed: pip install matplotlib" in out.stdout


# --- layer statistics --------------------------------------------------------------------------------

def _deep(activation, seed=0):
    layers = []
    for i in range(3):
        layers += [nn.Linear(12 if i == 0 else 10, 10, generator=np.random.default_rng([seed, i])), activation()]
    return nn.Sequential(*layers, nn.Linear(10, 4, generator=np.random.default_rng([seed, 9])))


@pytest.fixture(scope="module")
def stats():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 12)).astype(np.float32), rng.integers(0, 4, 64)
    return {"sigmoid": layer_statistics(_deep(nn.Sigmoid), X, y, bins=12),
            "relu": layer_statistics(_deep(nn.ReLU), X, y, bins=12)}


def test_activation_histograms_draw_each_nonlinearity_per_model(plt, stats):
    fig = plot.activation_histograms(stats)
    assert [ax.get_title() for ax in fig.axes] == ["sigmoid", "relu"]
    for ax, records in zip(fig.axes, stats.values()):
        hidden = [r for r in records if r["activation"]]
        assert len(ax.patches) == len(hidden) == 3
        for patch, r in zip(ax.patches, hidden):
            values, edges, _ = patch.get_data()
            counts, expected_edges = r["histogram"]
            np.testing.assert_allclose(values, counts / counts.sum())
            np.testing.assert_array_equal(edges, expected_edges)
    sigmoid_edges = [p.get_data()[1] for p in fig.axes[0].patches]
    assert all(e[0] >= 0 and e[-1] <= 1 for e in sigmoid_edges)  # sigmoid outputs lie in (0, 1)


def test_gradient_histograms_draw_log_magnitudes_per_layer(plt, stats):
    fig = plot.gradient_histograms(stats, layers=["1", "3", "5", "6"])
    for ax, records in zip(fig.axes, stats.values()):
        assert len(ax.patches) == 4
        for patch, r in zip(ax.patches, [records[i] for i in (1, 3, 5, 6)]):
            values, edges, _ = patch.get_data()
            counts, expected_edges = r["grad_log10_histogram"]
            np.testing.assert_allclose(values, counts / counts.sum())
            np.testing.assert_array_equal(edges, expected_edges)
    assert fig.axes[0].get_xlabel() == "log10 |∂L/∂output|"


def test_activation_histograms_of_named_layers_and_errors(plt, stats):
    fig = plot.activation_histograms(stats["relu"], layers=["0", "6"])
    (ax,) = fig.axes
    assert len(ax.patches) == 2
    np.testing.assert_array_equal(ax.patches[1].get_data()[1], stats["relu"][6]["histogram"][1])
    with pytest.raises(ValueError, match=r"no layer named '9'; the layers are \['0', '1'"):
        plot.activation_histograms(stats["relu"], layers=["9"])
    with pytest.raises(TypeError, match="layer_statistics result"):
        plot.activation_histograms([{"name": "0"}])


def test_gradient_norms_one_line_per_model_input_side_first(plt, stats):
    fig = plot.gradient_norms(stats)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 2 and [t.get_text() for t in ax.get_legend().get_texts()] == ["sigmoid", "relu"]
    for line, records in zip(lines, stats.values()):
        norms = [r["weight_grad_norm"] for r in records if r["type"] == "Linear"]
        assert len(norms) == 4
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(line.get_ydata(), norms)
    fig = plot.gradient_norms(stats["sigmoid"], which="output")
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(),
                               [r["grad_output_norm"] for r in stats["sigmoid"] if r["activation"]])
    with pytest.raises(ValueError, match="which must be 'weight' or 'output'"):
        plot.gradient_norms(stats, which="bias")


# --- search ----------------------------------------------------------------------------------------

SPACE = {"lr": tune.loguniform(1e-5, 1.0), "width": tune.randint(0, 7), "act": tune.choice(["relu", "tanh"])}


def _offsets(ax):
    return [np.asarray(c.get_offsets()) for c in ax.collections]


def test_search_scores_scatter_every_trial_against_each_hyperparameter(plt):
    r = tune.random_search(obj.bowl, SPACE, n_trials=12, epochs=1, seed=3, executor="sequential")
    fig = plot.search_scores(r)
    lr_ax, width_ax, act_ax = fig.axes
    assert [ax.get_xlabel() for ax in fig.axes] == ["lr", "width", "act"]
    assert lr_ax.get_xscale() == "log" and width_ax.get_xscale() == "linear"
    trials, best = _offsets(lr_ax)  # the trials, then the best one starred
    np.testing.assert_allclose(trials, [[t["config"]["lr"], t["score"]] for t in r.trials])
    np.testing.assert_allclose(best, [[r.best_config["lr"], r.best_score]])
    categories = [t.get_text() for t in act_ax.get_xticklabels()]  # in order of appearance
    assert categories == list(dict.fromkeys(t["config"]["act"] for t in r.trials)) and len(categories) == 2
    np.testing.assert_allclose(_offsets(act_ax)[0][:, 0], [categories.index(t["config"]["act"]) for t in r.trials])
    # the same from the table (a DataFrame with pandas, else a list of dicts)
    again = plot.search_scores(r.table, params=["lr"])
    np.testing.assert_allclose(_offsets(again.axes[0])[0], trials)
    np.testing.assert_allclose(_offsets(again.axes[0])[1], best)


def test_search_scores_compare_searches_hollow_for_stopped_and_rounds_of_coarse_to_fine(plt):
    halving = tune.random_search(obj.bowl, SPACE, n_trials=9, epochs=9, min_epochs=1, eta=3, seed=2,
                                 executor="sequential")
    grid = tune.grid_search(obj.bowl, SPACE, points=2, epochs=1, executor="sequential")
    fig = plot.search_scores({"halving": halving, "grid": grid}, params="width")
    (ax,) = fig.axes
    full, stopped, best, grid_trials, grid_best = ax.collections
    assert len(full.get_offsets()) == 1 and len(stopped.get_offsets()) == 8
    assert len(stopped.get_facecolors()) == 0 or not stopped.get_facecolors()[:, 3].any()  # hollow
    assert len(grid_trials.get_offsets()) == len(grid.trials) == 2 * 2 * 2
    np.testing.assert_allclose(grid_best.get_offsets(), [[grid.best_config["width"], grid.best_score]])
    c2f = tune.coarse_to_fine(obj.bowl, SPACE, rounds=2, n_trials=5, epochs=1, seed=1, executor="sequential")
    labels = [t.get_text() for t in plot.search_scores(c2f, params="lr").axes[0].get_legend().get_texts()]
    assert labels[:2] == ["round 1: trials", "round 2: trials"] or labels[:3] == ["round 1: trials", "round 1: best",
                                                                                   "round 2: trials"]


def test_search_scores_of_a_bare_table_pick_the_axes_and_the_best_from_the_rows(plt):
    rows = [{"trial": i, "round": 0, "hidden": h, "layers": n, "budget": 3, "score": sc, "status": st}
            for i, (h, n, sc, st) in enumerate([(32, 1, 0.7, "ok"), (128, 2, 0.9, "ok"), (512, 4, 0.95, "failed"),
                                                (512, 3, 0.8, "ok")])]
    hidden_ax, layers_ax = plot.search_scores(rows).axes
    assert hidden_ax.get_xscale() == "log" and layers_ax.get_xscale() == "linear"  # a decade or more: log
    trials, best = _offsets(layers_ax)
    np.testing.assert_allclose(trials, [[1, 0.7], [2, 0.9], [3, 0.8]])  # the failed trial is left out
    np.testing.assert_allclose(best, [[2, 0.9]])


def test_search_scores_errors(plt):
    r = tune.random_search(obj.bowl, SPACE, n_trials=2, epochs=1, executor="sequential")
    with pytest.raises(ValueError, match="no search has the hyperparameter 'depth'"):
        plot.search_scores(r, params=["depth"])
    with pytest.raises(TypeError, match="SearchResult"):
        plot.search_scores(42)


# --- ensembles -------------------------------------------------------------------------------------

def _bars(ax):
    return [(round(p.get_x() + p.get_width() / 2, 6), p.get_height()) for p in ax.patches]


def test_ensemble_scores_bars_members_then_the_ensemble_with_the_mean_member(plt):
    fig = plot.ensemble_scores({"voting": ([0.80, 0.82, 0.81], 0.85), "bagging": ([0.79, 0.83], 0.84)})
    (ax,) = fig.axes
    assert _bars(ax) == [(0, 0.80), (1, 0.82), (2, 0.81), (3, 0.85), (5, 0.79), (6, 0.83), (7, 0.84)]
    means = [seg[0][1] for c in ax.collections for seg in c.get_segments()]
    np.testing.assert_allclose(means, [0.81, 0.81])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["voting", "bagging"]
    low, high = ax.get_ylim()
    assert low < 0.79 and high > 0.85 and low > 0.5  # zoomed on the differences


def test_ensemble_scores_of_a_fitted_ensemble_score_it_on_the_data(plt):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)).astype(np.float32), rng.integers(0, 3, 60)
    members = [nn.Sequential(nn.Linear(5, 3, generator=np.random.default_rng(i))) for i in range(3)]
    ens = fastnn.ensemble.VotingClassifier(members, prefit=True)
    fig = plot.ensemble_scores(ens, X, y)
    heights = [h for _, h in _bars(fig.axes[0])]
    np.testing.assert_allclose(heights, [*ens.member_scores(X, y), ens.score(X, y)])
    with pytest.raises(ValueError, match="give X and y"):
        plot.ensemble_scores(ens)
    with pytest.raises(TypeError, match="a fitted ensemble or a"):
        plot.ensemble_scores({"a": ([0.8], 0.9), "b": "x"})
