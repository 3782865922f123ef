"""The Optuna bridge (optional: ``pip install optuna``): a fastnn model-building or fit function as
an Optuna objective. Optuna's sampler picks the hyperparameters (fastnn spaces become its
suggestions) and its pruner stops bad trials: the objective reports the validation score after
every epoch and raises ``optuna.TrialPruned`` when the pruner says so.

    objective = tune.optuna_objective(build_model, {"lr": tune.loguniform(1e-4, 1e-1),
                                                    "hidden": tune.choice([32, 64, 128])}, X, y, epochs=10)
    study = optuna.create_study(direction=objective.direction, pruner=optuna.pruners.MedianPruner())
    study.optimize(objective, n_trials=30)
    study.best_params, study.best_value, objective.best_model
"""

import math
import threading

import numpy as np

from .. import _validate as _v
from ..train.callbacks import Callback
from . import search as _search
from . import spaces as _spaces
from . import trial as _trial

__all__ = ["OptunaObjective", "optuna_objective", "optuna_suggest"]

_PRIMITIVE = (type(None), bool, int, float, str)  # what Optuna stores as a categorical choice


def _optuna(fn):
    try:
        import optuna
    except ImportError:
        raise ImportError(f"tune.{fn} needs Optuna, which is not installed: pip install optuna") from None
    return optuna


def _decimal(x):
    return round(x, 12)  # multiples of q (0.1 * 3 = 0.30000000000000004) as Optuna's step check reads them


def optuna_suggest(trial, space):
    """One config from an Optuna trial: each fastnn Space as the matching suggestion (other values
    kept as they are). choice -> suggest_categorical (options that are not None/bool/int/float/str
    are suggested by their str, or their index when two look alike); uniform / loguniform ->
    suggest_float (log=True); randint(low, high) -> suggest_int(low, high - 1) (high is exclusive
    in fastnn, inclusive in Optuna); quniform(low, high, q) -> a step q between the first and last
    multiples of q in [low, high] (suggest_int when all are integers)."""
    space = _spaces._check_space(space, "tune.optuna_suggest")
    config = {}
    for name, s in space.items():
        if not isinstance(s, _spaces.Space):
            config[name] = s
        elif isinstance(s, _spaces.choice):
            if all(type(o) in _PRIMITIVE for o in s.options):
                config[name] = trial.suggest_categorical(name, list(s.options))
            else:
                labels = [str(o) for o in s.options]
                if len(set(labels)) < len(labels):
                    labels = [str(i) for i in range(len(s.options))]
                config[name] = s.options[labels.index(trial.suggest_categorical(name, labels))]
        elif isinstance(s, _spaces.quniform):
            lo, hi = math.ceil(s.low / s.q), math.floor(s.high / s.q)  # the multiples of q in [low, high]
            if s._integral:
                config[name] = trial.suggest_int(name, int(lo * s.q), int(hi * s.q), step=int(s.q))
            else:
                config[name] = trial.suggest_float(name, _decimal(lo * s.q), _decimal(hi * s.q), step=s.q)
        elif isinstance(s, (_spaces.uniform, _spaces.loguniform)):
            config[name] = trial.suggest_float(name, s.low, s.high, log=s.log)
        elif isinstance(s, _spaces.randint):
            config[name] = trial.suggest_int(name, s.low, s.high - 1)
        else:
            raise TypeError(f"tune.optuna_suggest: {name!r} is a {type(s).__name__}, which has no Optuna suggestion; use "
                            "choice, uniform, loguniform, randint or quniform, or pass space as a function of the trial")
    return config


class _Reporter(Callback):
    """Reports `metric` after every epoch; stops training when the pruner says so."""

    def __init__(self, trial, metric):
        self.trial, self.metric = trial, metric
        self.pruned_at = None
        self.epochs = 0
        self.last = None

    def on_epoch_end(self, epoch, logs=None):
        if self.metric not in logs:
            raise KeyError(f"tune.optuna_objective: metric {self.metric!r} is not among fit's metrics {sorted(logs)}")
        self.epochs = epoch + 1
        self.last = value = float(logs[self.metric])
        self.trial.report(value, epoch + 1)  # step = epochs trained
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.fit_state.stop_training = True


class OptunaObjective:
    """``objective(trial) -> score`` for ``study.optimize``; see :func:`optuna_objective`.

    ``direction`` is what the study must be created with; ``best_model`` is the model of the best
    completed trial so far (kept as fastnn bytes, rebuilt on access), ``best_trial_number`` its number.
    """

    def __init__(self, fn, space, data, epochs, metric, mode, seed, fit_params):
        self.fn, self.space, self.data = fn, space, data
        self.epochs, self.metric, self.mode, self.seed, self.fit_params = epochs, metric, mode, seed, fit_params
        self._lock = threading.Lock()  # study.optimize(n_jobs=k) calls from k threads
        self._build_lock = threading.Lock()  # the global seed is the process's: one seeded build at a time
        self._best = None  # (score, trial number, model bytes)

    @property
    def direction(self):
        return "maximize" if self.mode == "max" else "minimize"

    @property
    def best_trial_number(self):
        return None if self._best is None else self._best[1]

    @property
    def best_model(self):
        if self._best is None or self._best[2] is None:
            return None
        from .. import io

        return io.from_bytes(self._best[2])

    def _check_direction(self, trial, optuna):
        directions = trial.study.directions
        wanted = optuna.study.StudyDirection.MAXIMIZE if self.mode == "max" else optuna.study.StudyDirection.MINIMIZE
        if len(directions) != 1 or directions[0] != wanted:
            raise ValueError(f"tune.optuna_objective: {self.metric} is to be {self.direction}d, but the study's "
                             f"direction is {[d.name.lower() for d in directions]}: create it with "
                             f"optuna.create_study(direction=objective.direction)")

    def __call__(self, trial):
        optuna = _optuna("optuna_objective")
        self._check_direction(trial, optuna)
        config = self.space(trial) if callable(self.space) else optuna_suggest(trial, self.space)
        if not isinstance(config, dict):
            raise TypeError(f"tune.optuna_objective: space(trial) must return a config dict, got {type(config).__name__}")
        seed = int(np.random.default_rng([self.seed, trial.number]).integers(2**63))
        reporter = _Reporter(trial, self.metric)
        model, score = self._train(config, seed, reporter)
        trial.set_user_attr("epochs", reporter.epochs)
        if reporter.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}: {self.metric} = {reporter.last:.4g}")
        if math.isfinite(score):
            self._keep(score, trial.number, model)
        return score

    def _train(self, config, seed, reporter):
        """(model or None, the final score)."""
        from .. import fit
        from ..nn.module import Module

        if self.data is None:  # fit_fn(config, callbacks) -> History or (History, model)
            with _trial.seeded(seed):
                out = self.fn(dict(config), [reporter])
            history, model = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
            if not hasattr(history, "history") or (model is not None and not isinstance(model, Module)):
                raise TypeError("tune.optuna_objective: fit_fn(config, callbacks) must return fit's History, or "
                                f"(History, model); got {type(out).__name__}")
            if not history.history.get(self.metric):
                raise KeyError(f"tune.optuna_objective: the History has no {self.metric!r} (did fit_fn pass "
                               f"callbacks= to fastnn.fit, with validation data?); it has {sorted(history.history)}")
            return model, float(history.history[self.metric][-1])
        X, y, Xv, yv = self.data
        params = dict(self.fit_params)
        params.update({k: config[k] for k in _trial.FIT_KEYS if k in config})
        with self._build_lock, _trial.seeded(seed):
            model = self.fn(dict(config))
        if not isinstance(model, Module):
            raise TypeError(f"tune.optuna_objective: build_model(config) must return a fastnn model, got "
                            f"{type(model).__name__}")
        optimizer = _trial.make_optimizer(model, params.pop("optimizer", "adam"), params.pop("lr", None))
        history = fit(model, X, y, optimizer=optimizer, epochs=self.epochs, validation_data=(Xv, yv), seed=seed,
                      verbose=0, callbacks=[reporter], **params)
        return model, float(history.history[self.metric][-1])

    def _keep(self, score, number, model):
        from .. import io

        with self._lock:
            if self._best is None or (score > self._best[0] if self.mode == "max" else score < self._best[0]):
                self._best = (score, number, None if model is None else io.to_bytes(model))


def optuna_objective(fn, space, X=None, y=None, *, epochs=10, metric=None, mode=None, validation_data=None,
                     validation_split=0.2, seed=0, **fit_params):
    """An Optuna objective that trains a fastnn model per trial, reporting the validation score
    after every epoch (``trial.report(score, epoch)``) and raising ``optuna.TrialPruned`` when
    the study's pruner says so (training stops at that epoch).

    Two ways to say what a trial is, as in the searches:
        optuna_objective(build_model, space, X, y, epochs=10)   # build_model(config) -> Module; fit here
        optuna_objective(fit_fn, space, epochs=10)              # fit_fn(config, callbacks) -> History
    In the first, each trial builds the model (after ``fastnn.manual_seed`` of a seed from `seed`
    and the trial number), fits it for `epochs` with the config's fit keys (lr, optimizer,
    batch_size, ...) on (X, y) and scores it on `validation_data` (or a seeded
    `validation_split` of (X, y)). In the second, fit_fn must pass `callbacks` to ``fastnn.fit``
    (with validation data) and return its History (or (History, model)).

    Trials may run in threads (``study.optimize(..., n_jobs=2)``: fit releases the GIL); in build_model
    mode a trial's training depends on its number and config only, whatever the threads (which trials
    the pruner stops depends on which finished first, as always with parallel Optuna).

    Args:
        epochs: epochs per trial (build_model mode; fit_fn decides its own).
        space: {name: tune.choice / uniform / loguniform / randint / quniform, or a fixed value},
            suggested through the trial (:func:`optuna_suggest`), or a function trial -> config dict
            for Optuna's own suggest_* calls (conditional spaces).
        metric, mode: the score ("val_accuracy", maximized, by default; "val_loss", minimized,
            for loss="mse"); create the study with ``direction=objective.direction``.
        **fit_params: other fit() arguments (loss, batch_size, optimizer, lr, ...); config keys override them.
    Returns:
        An OptunaObjective: ``study.optimize(objective, n_trials=...)``; ``objective.best_model``.
    """
    fn_name = "optuna_objective"
    _optuna(fn_name)
    if not callable(fn):
        raise TypeError(f"tune.{fn_name}: the first argument must be build_model(config) or fit_fn(config, callbacks), "
                        f"got {type(fn).__name__}")
    if not callable(space):
        space = _spaces._check_space(space, f"tune.{fn_name}")
    epochs = _v.check_int(epochs, f"tune.{fn_name}", "epochs", 1)
    seed = _v.check_seed(seed, f"tune.{fn_name}")
    if (X is None) != (y is None):
        raise ValueError(f"tune.{fn_name}: give both X and y (build_model mode) or neither (fit_fn mode)")
    data = None
    if X is not None:
        _search.check_fit_params(fit_params, f"tune.{fn_name}")
        data = _search._split(X, y, validation_data, validation_split, seed, f"tune.{fn_name}")
    elif validation_data is not None or fit_params:
        raise ValueError(f"tune.{fn_name}: validation data and fit arguments ({sorted(fit_params)}) go with "
                         "build_model mode (X, y given)")
    metric, mode = _search.default_metric(metric, mode, fit_params, f"tune.{fn_name}")
    return OptunaObjective(fn, space, data, epochs, metric, mode, seed, fit_params)
