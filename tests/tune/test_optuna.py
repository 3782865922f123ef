"""The Optuna bridge: fastnn spaces as Optuna suggestions, per-epoch reports, pruning by a real
MedianPruner, the best model kept, and clear errors."""

import sys

import numpy as np
import pytest

import fastnn
from fastnn import nn, tune

from . import objectives as obj

optuna = pytest.importorskip("optuna")


@pytest.fixture(autouse=True)
def quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


def test_each_space_becomes_the_matching_suggestion():
    space = {"lr": tune.loguniform(1e-4, 1e-1), "p": tune.uniform(0.0, 0.5), "layers": tune.randint(1, 4),
             "batch": tune.quniform(15, 130, 16), "step": tune.quniform(0.05, 0.95, 0.1),
             "act": tune.choice(["relu", "elu"]), "sizes": tune.choice([(64, 32), (128,)]), "epochs": 3}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {"layers": set(), "sizes": set()}
    for _ in range(40):
        trial = study.ask()
        config = tune.optuna_suggest(trial, space)
        d = trial.distributions
        assert d["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
        assert d["p"] == optuna.distributions.FloatDistribution(0.0, 0.5)
        assert d["layers"] == optuna.distributions.IntDistribution(1, 3)  # randint's high is exclusive
        assert d["batch"] == optuna.distributions.IntDistribution(16, 128, step=16)  # the multiples of 16 in range
        assert d["step"] == optuna.distributions.FloatDistribution(0.1, 0.9, step=0.1)
        assert d["act"] == optuna.distributions.CategoricalDistribution(["relu", "elu"])
        assert d["sizes"] == optuna.distributions.CategoricalDistribution(["(64, 32)", "(128,)"])
        assert "epochs" not in d and config["epochs"] == 3
        assert 1e-4 <= config["lr"] <= 1e-1 and 0 <= config["p"] <= 0.5
        assert config["batch"] % 16 == 0 and isinstance(config["batch"], int)
        assert abs(config["step"] * 10 - round(config["step"] * 10)) < 1e-9
        assert config["sizes"] in [(64, 32), (128,)]  # the option itself, not its label
        seen["layers"].add(config["layers"])
        seen["sizes"].add(config["sizes"])
        study.tell(trial, 0.0)
    assert seen["layers"] == {1, 2, 3} and seen["sizes"] == {(64, 32), (128,)}


def test_alike_labels_fall_back_to_indices_and_unknown_spaces_are_refused():
    class Odd:
        def __str__(self):
            return "odd"

    a, b = Odd(), Odd()
    study = optuna.create_study()
    trial = study.ask()
    assert tune.optuna_suggest(trial, {"o": tune.choice([a, b])})["o"] in (a, b)
    assert trial.distributions["o"] == optuna.distributions.CategoricalDistribution(["0", "1"])

    class Mine(tune.Space):
        pass

    with pytest.raises(TypeError, match="'x' is a Mine, which has no Optuna suggestion"):
        tune.optuna_suggest(study.ask(), {"x": Mine()})


def _mlp(config):
    return nn.Sequential(nn.Linear(20, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], 3))


def test_a_median_pruner_prunes_bad_trials_and_the_best_is_sensible():
    X, y = obj.toy_data(n=300)
    space = {"lr": tune.loguniform(1e-6, 3e-2), "hidden": tune.choice([4, 16])}
    objective = tune.optuna_objective(_mlp, space, X, y, epochs=6, batch_size=32, seed=1)
    assert objective.direction == "maximize" and objective.metric == "val_accuracy"
    study = optuna.create_study(direction=objective.direction, sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))
    study.optimize(objective, n_trials=14)
    states = [t.state for t in study.trials]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(pruned) >= 3 and len(done) >= 3, states
    for t in pruned:  # stopped at the epoch the pruner said so, having reported every epoch before
        assert sorted(t.intermediate_values) == list(range(1, len(t.intermediate_values) + 1))
        assert 2 <= len(t.intermediate_values) < 6 and t.user_attrs["epochs"] == len(t.intermediate_values)
    for t in done:
        assert sorted(t.intermediate_values) == [1, 2, 3, 4, 5, 6] and t.value == t.intermediate_values[6]
    # each was pruned on the values it reported: its best so far below the median of the trials completed
    # before it at that step (MedianPruner's rule)
    for t in pruned:
        step = max(t.intermediate_values)
        before = [u.intermediate_values[step] for u in done if u.number < t.number]
        assert max(t.intermediate_values.values()) < np.median(before)
    assert study.best_value > 0.85 and study.best_params["lr"] > 1e-3
    # the best model is the best trial's, scored on the same seeded validation split
    assert objective.best_trial_number == study.best_trial.number
    model = objective.best_model
    _, _, Xv, yv = tune.search._split(X, y, None, 0.2, 1, "t")
    assert fastnn.evaluate(model, Xv, yv)["accuracy"] == pytest.approx(study.best_value)
    assert model[0].weight.shape[0] == study.best_params["hidden"]


def test_a_trial_is_reproducible_from_its_number():
    X, y = obj.toy_data()
    space = {"lr": tune.loguniform(1e-3, 1e-2), "hidden": tune.choice([8])}
    values = []
    for _ in range(2):
        objective = tune.optuna_objective(_mlp, space, X, y, epochs=2, batch_size=32, seed=4)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
        study.optimize(objective, n_trials=2)
        values.append([t.intermediate_values for t in study.trials])
    assert values[0] == values[1]


def test_a_fit_function_reports_through_the_callbacks_it_passes_to_fit():
    X, y = obj.toy_data()
    Xv, yv = obj.toy_data(n=90, seed=1)
    histories = {}

    def fit_fn(config, callbacks):
        model = _mlp({"hidden": 8})
        history = fastnn.fit(model, X, y, lr=config["lr"], epochs=3, batch_size=32, validation_data=(Xv, yv),
                             callbacks=callbacks, verbose=0, loss="cross_entropy")
        histories[config["lr"]] = history
        return history, model

    objective = tune.optuna_objective(fit_fn, {"lr": tune.loguniform(1e-3, 1e-2)}, metric="val_loss")
    assert objective.direction == "minimize"
    study = optuna.create_study(direction="minimize")
    study.optimize(objective, n_trials=2)
    for t in study.trials:
        h = histories[t.params["lr"]]
        assert [t.intermediate_values[e] for e in (1, 2, 3)] == h["val_loss"] and t.value == h["val_loss"][-1]
    assert objective.best_model is not None


def test_errors_are_clear(monkeypatch):
    X, y = obj.toy_data(n=60)
    space = {"hidden": tune.choice([4])}
    objective = tune.optuna_objective(_mlp, space, X, y, epochs=1)
    with pytest.raises(ValueError, match=r"val_accuracy is to be maximized, but the study's direction is \['minimize'\]"):
        optuna.create_study().optimize(objective, n_trials=1, catch=())
    with pytest.raises(TypeError, match="must return a fastnn model"):
        optuna.create_study(direction="maximize").optimize(
            tune.optuna_objective(lambda c: "model", space, X, y, epochs=1), n_trials=1)
    with pytest.raises(TypeError, match="must return fit's History"):
        optuna.create_study(direction="maximize").optimize(
            tune.optuna_objective(lambda c, callbacks: 0.5, space), n_trials=1)
    with pytest.raises(ValueError, match="both X and y"):
        tune.optuna_objective(_mlp, space, X)
    with pytest.raises(ValueError, match="the search's to set"):
        tune.optuna_objective(_mlp, space, X, y, callbacks=[])
    with pytest.raises(TypeError, match="space must be"):
        tune.optuna_objective(_mlp, [1], X, y)
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    with pytest.raises(ImportError, match="tune.optuna_objective needs Optuna, which is not installed: pip install optuna"):
        tune.optuna_objective(_mlp, space, X, y)
