import math
import os

import numpy as np
import pytest

import fastnn
from fastnn import tune

from . import objectives as obj

SPACE = {"lr": tune.loguniform(1e-5, 1e-0), "width": tune.randint(0, 7), "act": tune.choice(["relu", "tanh"])}


@pytest.fixture(scope="module")
def pool():
    p = tune.LocalPool(n_workers=2, threads_per_worker=1)
    yield p
    p.shutdown()


def test_grid_search_finds_the_optimum_on_its_grid(pool):
    space = {"lr": tune.loguniform(10 ** -4.5, 10 ** -0.5), "width": tune.randint(1, 6), "act": tune.choice(["relu", "tanh"])}
    r = tune.grid_search(obj.bowl, space, points=5, epochs=4, executor=pool)
    assert r.cost["trials"] == r.cost["grid_trials"] == 5 * 5 * 2 and r.cost["grid_bound"] == 5 ** 3
    assert r.best_config["width"] == 3 and r.best_config["act"] == "relu"
    assert math.log10(r.best_config["lr"]) == pytest.approx(-2.5)
    assert r.best_score == pytest.approx(-1 / 4)


def test_random_search_comes_near_the_optimum_and_coarse_to_fine_closer(pool):
    r = tune.random_search(obj.bowl, SPACE, n_trials=30, epochs=1, seed=1, executor=pool)
    scores = [t["score"] for t in r.trials]
    assert r.best_score == max(scores) and len(r.trials) == 30
    assert r.best_score > -2.5 and abs(math.log10(r.best_config["lr"]) + 2.5) < 1
    assert r.cost["grid_trials"] == 30 * 7 * 2 and r.cost["grid_bound"] == 30 ** 3
    c = tune.coarse_to_fine(obj.bowl, SPACE, rounds=3, n_trials=10, top_k=3, epochs=1, seed=1, executor=pool)
    rounds = [[t["score"] for t in c.trials if t["round"] == k] for k in range(3)]
    assert max(rounds[2]) >= max(rounds[0]) and np.mean(rounds[2]) > np.mean(rounds[0])
    last = c.spaces[2]
    assert last["lr"].high - last["lr"].low < SPACE["lr"].high - SPACE["lr"].low
    assert c.best_score > -1.5 and c.best_score > r.best_score  # the optimum at budget 1 is -1; same 30 trials


def test_successive_halving_keeps_the_best_third_at_each_rung(pool):
    r = tune.random_search(obj.bowl, SPACE, n_trials=9, epochs=9, min_epochs=1, eta=3, seed=2, executor=pool)
    budgets = sorted(t["budget"] for t in r.trials)
    assert budgets == [1] * 6 + [3] * 2 + [9]
    first = sorted((obj.bowl(t["config"], 1), t["budget"]) for t in r.trials)
    assert first[-1][1] == 9 and {b for _, b in first[-3:]} == {3, 9}  # the best at budget 1 went on
    assert r.cost["epochs"] == 9 * 1 + 3 * 3 + 9
    assert all((t["status"] == "stopped") == (t["budget"] < 9) for t in r.trials)


def test_table_has_one_row_per_trial_with_the_config():
    pandas = pytest.importorskip("pandas")
    r = tune.random_search(obj.bowl, SPACE, n_trials=4, epochs=1, executor="sequential")
    assert isinstance(r.table, pandas.DataFrame)
    assert list(r.table["trial"]) == [0, 1, 2, 3] and set(SPACE) <= set(r.table.columns)
    assert list(r.table["score"]) == [t["score"] for t in r.trials]


def test_the_same_seed_gives_the_same_configs_and_another_does_not():
    a = tune.random_search(obj.bowl, SPACE, n_trials=5, epochs=1, seed=3, executor="sequential")
    b = tune.random_search(obj.bowl, SPACE, n_trials=5, epochs=1, seed=3, executor="sequential")
    c = tune.random_search(obj.bowl, SPACE, n_trials=5, epochs=1, seed=4, executor="sequential")
    assert [t["config"] for t in a.trials] == [t["config"] for t in b.trials] != [t["config"] for t in c.trials]


def test_model_mode_trains_halves_and_returns_the_best_model(pool):
    X, y = obj.toy_data()
    space = {"lr": tune.loguniform(1e-4, 3e-2), "hidden": tune.choice([4, 16])}
    r = tune.random_search(obj.mlp, space, X, y, n_trials=4, epochs=4, min_epochs=2, eta=2, batch_size=32,
                           seed=5, executor=pool)
    assert sorted(t["budget"] for t in r.trials) == [2, 2, 4, 4]
    assert [t["model"] is not None for t in r.trials].count(True) == 1  # only the best model is kept
    model = r.best_model
    assert isinstance(model, fastnn.nn.Module) and model[0].weight.shape[0] == r.best_config["hidden"]
    # the score is the validation accuracy of the returned model on the seeded split
    Xtr, ytr, Xv, yv = tune.search._split(X, y, None, 0.2, 5, "t")
    assert fastnn.evaluate(model, Xv, yv)["accuracy"] == pytest.approx(r.best_score)
    # resumed halving equals training the best config for all epochs at once (same seed)
    best = r.best_trial
    full = tune.trial.run_model(obj.mlp, best["config"], 0, 4, None, (Xtr, ytr, Xv, yv), {"batch_size": 32},
                                best["seed"], "val_accuracy", None)
    assert full["score"] == r.best_score
    np.testing.assert_array_equal(fastnn.io.from_bytes(full["model"])[0].weight.data, model[0].weight.data)


def test_fit_keys_of_the_config_reach_fit(monkeypatch):
    """batch_size and drop_last in a config are fit's arguments (tune.trial.FIT_KEYS), as in fit_params."""
    X, y = obj.toy_data(50)
    seen = []
    real_fit = fastnn.fit
    monkeypatch.setattr(fastnn, "fit", lambda *a, **k: seen.append((k.get("batch_size"), k.get("drop_last"))) or
                        real_fit(*a, **k))
    for config, fit_params in (({"hidden": 4, "batch_size": 16, "drop_last": True}, {}),
                               ({"hidden": 4}, {"batch_size": 8, "drop_last": True}), ({"hidden": 4}, {})):
        tune.trial.run_model(obj.mlp, config, 0, 1, None, (X[:40], y[:40], X[40:], y[40:]), fit_params, 0,
                             "val_accuracy", None)
    assert seen == [(16, True), (8, True), (None, None)]


def test_a_worker_that_dies_loses_only_its_trial_which_is_retried(pool, tmp_path):
    space = {"x": tune.uniform(0, 1), "die": tune.choice([False]), "marker": str(tmp_path / "died")}
    configs = [{"x": 0.1 * i, "die": i == 2, "marker": str(tmp_path / "died")} for i in range(5)]
    search = tune.search._Search("t", obj.dies_once, None, None, 1, None, 3, 0, pool, None, 0.2, None, None, 1, None, {})
    search.run(configs)
    r = search.result(space, None)
    assert (tmp_path / "died").exists()
    assert [t["status"] for t in r.trials] == ["ok"] * 5
    assert [t["score"] for t in r.trials] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert [t["lost"] for t in r.trials] == [0, 0, 1, 0, 0]
    assert len(r.failures) == 1 and r.failures[0]["trial"] == 2 and "exited with code 3" in r.failures[0]["error"]
    assert len(pool.pids) == 2  # a replacement worker was started


def test_a_trial_that_dies_every_time_is_reported_failed():
    pool = tune.LocalPool(n_workers=1)
    try:
        search = tune.search._Search("t", obj.always_dies, None, None, 1, None, 3, 0, pool, None, 0.2, None, None, 2,
                                     None, {})
        search.run([{"x": 1.0, "die": True}, {"x": 2.0}])
        r = search.result({"x": 1.0}, None)
    finally:
        pool.shutdown()
    assert [t["status"] for t in r.trials] == ["failed", "ok"] and math.isnan(r.trials[0]["score"])
    assert [t["lost"] for t in r.trials] == [3, 0] and len(r.failures) == 3  # 1 attempt + 2 retries
    assert r.best_score == 2.0


def test_errors_are_clear():
    with pytest.raises(ZeroDivisionError, match="own error"):
        tune.random_search(obj.raises, SPACE, n_trials=2, epochs=1, executor="sequential")
    with pytest.raises(TypeError, match="space must be"):
        tune.random_search(obj.bowl, [1, 2], executor="sequential")
    with pytest.raises(ValueError, match="both X and y"):
        tune.random_search(obj.mlp, SPACE, np.zeros((4, 20)), executor="sequential")
    with pytest.raises(ValueError, match="min_epochs"):
        tune.random_search(obj.bowl, SPACE, epochs=3, min_epochs=4, executor="sequential")
    with pytest.raises(ValueError, match="the search's to set"):
        tune.random_search(obj.mlp, SPACE, *obj.toy_data(), executor="sequential", seed=1, verbose=2)
    with pytest.raises(TypeError, match="executor must be"):
        tune.random_search(obj.bowl, SPACE, n_trials=1, epochs=1, executor=object())


def test_a_task_the_workers_cannot_import_fails_as_itself(pool, tmp_path, monkeypatch):
    (tmp_path / "only_here.py").write_text("def f(config, budget):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # after the workers started: they cannot import it
    import only_here

    with pytest.raises(ModuleNotFoundError, match="only_here"):
        tune.random_search(only_here.f, SPACE, n_trials=2, epochs=1, executor=pool)
    with pytest.raises(Exception, match="pickle|lambda"):
        tune.random_search(lambda c, b: 1.0, SPACE, n_trials=1, epochs=1, executor=pool)
    assert tune.random_search(obj.bowl, SPACE, n_trials=2, epochs=1, executor=pool).best_score < 0  # pool still works


def test_a_search_in_this_process_leaves_the_global_seed_as_it_was():
    fastnn.manual_seed(123)
    fastnn.random.next_step()
    before = dict(fastnn.random._state)
    tune.random_search(obj.mlp, {"hidden": tune.choice([4])}, *obj.toy_data(60), n_trials=2, epochs=1,
                       executor="sequential")
    assert fastnn.random._state == before


def test_spawned_workers_get_their_thread_count_before_numpy_loads(pool):
    assert [pool.submit(os.getenv, v).result() for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")] == ["1", "1"]
    assert pool.submit(fastnn.get_num_threads).result() == 1


def test_forkserver_workers_and_a_thread_count_per_worker():
    pool = tune.LocalPool(n_workers=1, threads_per_worker=2, context="forkserver")
    try:
        assert pool.submit(fastnn.get_num_threads).result() == 2
        assert pool.submit(obj.bowl, obj.OPTIMUM, 4).result() == -0.25
    finally:
        pool.shutdown()
    with pytest.raises(ValueError, match="context"):
        tune.LocalPool(context="fork")  # forking a process that ran OpenMP is unsafe
