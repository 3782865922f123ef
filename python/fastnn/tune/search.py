"""Grid, random and coarse-to-fine search, each with optional successive halving of bad trials.

Two ways to say what a trial is:
    tune.random_search(train_fn, space, n_trials=16, epochs=9)         # train_fn(config, budget) -> score
    tune.random_search(build_model, space, X, y, n_trials=16, epochs=9)  # build_model(config) -> Module
In the second, each trial builds the model (after ``fastnn.manual_seed(trial seed)``), fits it with
the config's fit keys (lr, optimizer, batch_size, drop_last, ...) and is scored by the last epoch's
``val_accuracy`` (or `metric`) on validation data (a seeded `validation_split` of (X, y) unless
given). ``min_epochs=`` turns on successive halving: all trials run ``min_epochs``, the best 1/eta
continue to eta times that budget, and so on up to `epochs` (resuming from the model and
optimizer state of the rung before).
"""

import math

import numpy as np

from .. import _validate as _v
from . import executors as _ex
from . import spaces as _spaces
from . import trial as _trial

__all__ = ["SearchResult", "grid_search", "random_search", "coarse_to_fine"]


class SearchResult:
    """Trials of a search. ``table`` (a pandas DataFrame when pandas is installed, else a list of
    dicts: one row per trial with its config, budget, score, status ("ok"; "stopped" by successive halving
    at its budget; "failed"; "nonfinite"), lost
    (attempts lost with their worker, then retried), seconds),
    ``best_config``, ``best_score``, ``best_model`` (a fastnn model, when trials return one),
    ``failures`` (attempts lost with their worker) and ``cost`` (trials, epochs, and the trials of a grid as
    fine as the search: q^m, or fewer where a hyperparameter has fewer than q values)."""

    def __init__(self, trials, mode, space, grid_points, failures):
        self.trials = trials
        self.mode = mode
        self.space = space
        self.failures = failures
        self._grid_points = grid_points
        ok = [t for t in trials if t["status"] in ("ok", "stopped")]
        if not ok:
            raise RuntimeError(f"tune: every trial failed ({len(failures)} lost attempts: {failures[:3]})")
        top = max(t["budget"] for t in ok)
        ok = [t for t in ok if t["budget"] == top]  # with halving, the best of those that ran the full budget
        pick = max if mode == "max" else min
        self.best_trial = pick(ok, key=lambda t: t["score"])
        for t in trials:  # only the best model is kept (the others' bytes could be large)
            if t is not self.best_trial:
                t["model"] = None

    @property
    def best_config(self):
        return dict(self.best_trial["config"])

    @property
    def best_score(self):
        return self.best_trial["score"]

    @property
    def best_model(self):
        """The best trial's trained model, rebuilt from its fastnn bytes (None when train_fn gave none)."""
        data = self.best_trial.get("model")
        if data is None:
            return None
        from .. import io

        return io.from_bytes(data)

    @property
    def cost(self):
        """Trials and epochs spent, beside the grid cost q^m: for a grid search q is its points per
        hyperparameter; for a random search, the number of distinct values each one took (a grid
        that tried as many values of every hyperparameter would need q^m trials)."""
        axes = [v for v in self.space.values() if isinstance(v, _spaces.Space)]
        q = self._grid_points if self._grid_points else len(self.trials)
        return {"trials": len(self.trials), "epochs": int(sum(t["epochs_run"] for t in self.trials)),
                "grid_points": q, "dimensions": len(axes), "grid_bound": q ** len(axes),
                "grid_trials": math.prod(len(v.grid(q)) for v in axes)}  # q^m, less where an axis has fewer values

    @property
    def table(self):
        rows = [{"trial": t["trial"], "round": t["round"], **t["config"], "budget": t["budget"], "score": t["score"],
                 "status": t["status"], "lost": t["lost"], "seconds": t["seconds"]} for t in self.trials]
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows)

    def summary(self):
        c = self.cost
        return (f"{c['trials']} trials ({c['epochs']} epochs), best score {self.best_score:.4g} with "
                f"{self.best_config}; a grid as fine ({c['grid_points']} points x {c['dimensions']} "
                f"hyperparameters) would cost {c['grid_trials']} trials (q^m = {c['grid_bound']})")

    def __repr__(self):
        return f"SearchResult({self.summary()})"


class _Search:
    """What every search shares: how to run one batch of trials on the executor with halving."""

    def __init__(self, fn_name, objective, X, y, epochs, min_epochs, eta, seed, executor, validation_data,
                 validation_split, metric, mode, retries, threads_per_trial, fit_params):
        if not callable(objective):
            raise TypeError(f"{fn_name}: the first argument must be train_fn(config, budget) or build_model(config), "
                            f"got {type(objective).__name__}")
        self.fn_name = fn_name
        self.objective = objective
        self.epochs = _v.check_int(epochs, fn_name, "epochs", 1)
        self.min_epochs = None if min_epochs is None else _v.check_int(min_epochs, fn_name, "min_epochs", 1, self.epochs)
        self.eta = _v.check_int(eta, fn_name, "eta", 2)
        self.seed = _v.check_seed(seed, fn_name)
        self.retries = _v.check_int(retries, fn_name, "retries", 0)
        self.threads = None if threads_per_trial is None else _v.check_int(threads_per_trial, fn_name,
                                                                            "threads_per_trial", 1)
        self.executor = _ex.default_executor() if executor is None else executor
        self.model_mode = X is not None
        if (y is None) == self.model_mode:
            raise ValueError(f"{fn_name}: give both X and y (build_model mode) or neither (train_fn mode)")
        if self.model_mode:
            check_fit_params(fit_params, fn_name)
            self.data = _split(X, y, validation_data, validation_split, self.seed, fn_name)
            self.metric, self.mode = default_metric(metric, mode, fit_params, fn_name)
            self.fit_params = fit_params
        else:
            if validation_data is not None or fit_params:
                raise ValueError(f"{fn_name}: validation data and fit arguments ({sorted(fit_params)}) go with "
                                 "build_model mode (X, y given)")
            self.metric, self.mode = "score", _v.check_choice(mode or "max", fn_name, "mode", ("min", "max"))
        self.failures = []
        self.trials = []

    def budgets(self):
        if self.min_epochs is None:
            return [self.epochs]
        out, b = [], self.min_epochs
        while b < self.epochs:
            out.append(b)
            b *= self.eta
        return out + [self.epochs]

    def run(self, configs, round_index=0):
        """Runs `configs` (halving between budgets); appends and returns their trial records."""
        shared = self.model_mode and isinstance(self.executor, _ex.LocalPool)
        arrays = getattr(self, "data", None)
        if shared:  # workers on this machine map the data from files rather than get a copy per trial
            self.data = _trial.ArrayFiles(arrays)
        try:
            return self._run(configs, round_index)
        finally:
            if shared:
                self.data.close()
                self.data = arrays

    def _run(self, configs, round_index):
        rng = np.random.default_rng([self.seed, round_index, 1])
        records = []
        for config in configs:
            records.append({"trial": len(self.trials) + len(records), "round": round_index, "config": config,
                            "seed": int(rng.integers(2**63)), "budget": 0, "score": math.nan, "status": "ok",
                            "lost": 0, "seconds": 0.0, "epochs_run": 0, "model": None})
        alive = list(records)
        budgets = self.budgets()
        for rung, budget in enumerate(budgets):
            args = [self._task(r, budget) for r in alive]
            results, failures = _ex.run_tasks(self.executor, self._fn(), args, retries=self.retries)
            for f in failures:
                r = alive[f["task"]]
                r["lost"] += 1
                self.failures.append({"trial": r["trial"], "budget": budget, "error": f["error"]})
            for r, res in zip(alive, results):
                if res is None:  # its worker died at every attempt
                    r.update(status="failed", score=math.nan, model=None)
                    continue
                r["epochs_run"] += budget if not self.model_mode else budget - r["budget"]
                r.update(score=res["score"], model=res["model"], budget=budget, seconds=r["seconds"] + res["seconds"])
                if not math.isfinite(r["score"]):
                    r["status"] = "nonfinite"
            alive = [r for r in alive if r["status"] == "ok"]
            if rung + 1 < len(budgets):
                keep = max(1, len(alive) // self.eta)
                alive.sort(key=lambda r: r["score"], reverse=self.mode == "max")
                for r in alive[keep:]:
                    r["status"] = "stopped"
                    r["model"] = None  # a stopped trial's model is not kept
                alive = alive[:keep]
        self.trials.extend(records)
        return records

    def _fn(self):
        return _trial.run_model if self.model_mode else _trial.run_function

    def _task(self, r, budget):
        if not self.model_mode:
            return (self.objective, r["config"], budget, r["seed"], self.threads)
        return (self.objective, r["config"], r["budget"], budget, r["model"], self.data, self.fit_params, r["seed"],
                self.metric, self.threads)

    def result(self, space, grid_points):
        return SearchResult(self.trials, self.mode, space, grid_points, self.failures)


def check_fit_params(fit_params, fn_name):
    """fit() arguments a trial sets itself are refused among the user's."""
    taken = sorted(set(fit_params) & {"epochs", "initial_epoch", "seed", "verbose", "validation_data",
                                      "validation_split", "callbacks"})
    if taken:
        raise ValueError(f"{fn_name}: {taken} are the search's to set (epochs= and validation_data= are "
                         "its own arguments; each trial gets its own seed)")


def default_metric(metric, mode, fit_params, fn_name):
    """(metric, mode): val_accuracy maximized, or val_loss minimized for loss="mse", unless given."""
    metric = metric or ("val_loss" if str(fit_params.get("loss", "")).lower() == "mse" else "val_accuracy")
    return metric, _v.check_choice(mode or ("max" if "acc" in metric else "min"), fn_name, "mode", ("min", "max"))


def _split(X, y, validation_data, validation_split, seed, fn_name):
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"{fn_name}: X and y must have the same length, got {len(X)} and {len(y)}")
    if validation_data is not None:
        Xv, yv = validation_data
        return X, y, np.asarray(Xv), np.asarray(yv)
    frac = _v.check_real(validation_split, fn_name, "validation_split", 0, 1, low_open=True, high_open=True)
    n_val = int(round(len(X) * frac))
    if not 1 <= n_val < len(X):
        raise ValueError(f"{fn_name}: validation_split={validation_split} leaves no training or no validation samples")
    order = np.random.default_rng([seed, 7]).permutation(len(X))  # seeded: the data may be sorted by class
    val, train = order[:n_val], order[n_val:]
    return X[train], y[train], X[val], y[val]


_COMMON = """
    Args:
        objective: train_fn(config, budget) -> score (or (score, model)); or, with X and y,
            build_model(config) -> fastnn Module. Module-level functions (they are pickled by reference).
        space: dict name -> tune.choice / uniform / loguniform / randint / quniform (or a fixed value).
        X, y: data for build_model mode; validation_data=(X_val, y_val) or a seeded validation_split.
        epochs: the budget of a full trial (train_fn's `budget`); min_epochs: successive halving from
            this budget, keeping the best 1/eta at each rung.
        metric, mode: what to optimize ("val_accuracy" max by default; "val_loss" min for loss="mse").
        executor: None (the local process pool), "sequential" (this process), or any
            concurrent.futures.Executor (e.g. a Dask ``Client(...).get_executor()``).
        retries: how often a trial whose worker died is run again.
        threads_per_trial: fastnn threads in each trial (the local pool pins its workers already).
        **fit_params: other fit() arguments (loss, batch_size, optimizer, lr, ...); config keys override them.
    Returns:
        SearchResult.
"""


def random_search(objective, space, X=None, y=None, *, n_trials=16, epochs=10, min_epochs=None, eta=3, seed=0,
                  executor=None, validation_data=None, validation_split=0.2, metric=None, mode=None, retries=1,
                  threads_per_trial=None, **fit_params):
    space = _spaces._check_space(space, "random_search")
    n_trials = _v.check_int(n_trials, "random_search", "n_trials", 1)
    search = _Search("random_search", objective, X, y, epochs, min_epochs, eta, seed, executor, validation_data,
                     validation_split, metric, mode, retries, threads_per_trial, fit_params)
    rng = np.random.default_rng([search.seed, 0, 0])
    search.run([_spaces.sample(space, rng) for _ in range(n_trials)])
    return search.result(space, None)


def grid_search(objective, space, X=None, y=None, *, points=3, epochs=10, min_epochs=None, eta=3, seed=0,
                executor=None, validation_data=None, validation_split=0.2, metric=None, mode=None, retries=1,
                threads_per_trial=None, **fit_params):
    space = _spaces._check_space(space, "grid_search")
    points = _v.check_int(points, "grid_search", "points", 1)
    search = _Search("grid_search", objective, X, y, epochs, min_epochs, eta, seed, executor, validation_data,
                     validation_split, metric, mode, retries, threads_per_trial, fit_params)
    search.run(_spaces.grid(space, points))
    return search.result(space, points)


def coarse_to_fine(objective, space, X=None, y=None, *, rounds=2, n_trials=8, top_k=3, margin=0.5, epochs=10,
                   min_epochs=None, eta=3, seed=0, executor=None, validation_data=None, validation_split=0.2,
                   metric=None, mode=None, retries=1, threads_per_trial=None, **fit_params):
    space = _spaces._check_space(space, "coarse_to_fine")
    rounds = _v.check_int(rounds, "coarse_to_fine", "rounds", 1)
    n_trials = _v.check_int(n_trials, "coarse_to_fine", "n_trials", 1)
    top_k = _v.check_int(top_k, "coarse_to_fine", "top_k", 1)
    margin = _v.check_real(margin, "coarse_to_fine", "margin", 0)
    search = _Search("coarse_to_fine", objective, X, y, epochs, min_epochs, eta, seed, executor, validation_data,
                     validation_split, metric, mode, retries, threads_per_trial, fit_params)
    current = space
    search.spaces = []
    for r in range(rounds):
        search.spaces.append(current)
        rng = np.random.default_rng([search.seed, r, 0])
        search.run([_spaces.sample(current, rng) for _ in range(n_trials)], round_index=r)
        ok = [t for t in search.trials if t["status"] == "ok" and t["budget"] == search.epochs]  # not stopped
        if not ok:
            break
        ok.sort(key=lambda t: t["score"], reverse=search.mode == "max")
        current = _spaces.narrow(current, [t["config"] for t in ok[:top_k]], margin)
    result = search.result(space, None)
    result.spaces = search.spaces  # the space of each round, the first the one given
    return result


random_search.__doc__ = "Random search: n_trials configs drawn from `space` (seeded).\n" + _COMMON
grid_search.__doc__ = "Grid search: every choice and `points` points across each interval (q^m trials).\n" + _COMMON
coarse_to_fine.__doc__ = ("Coarse-to-fine: `rounds` random searches of n_trials, each in the space narrowed "
                          "around the top_k full-budget trials so far (widened by `margin` of their spread).\n" + _COMMON)
