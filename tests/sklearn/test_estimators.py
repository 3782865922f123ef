import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn.sklearn import NeuralNetClassifier, NeuralNetRegressor  # noqa: E402

SMALL = dict(hidden_layer_sizes=(16,), epochs=60, random_state=0)
CHECKED = dict(hidden_layer_sizes=(16,), epochs=15, lr=1e-2, random_state=0)  # quick, and enough to learn the checks' data


# Every check of scikit-learn's suite, none excluded. (random_state is set: with None the
# estimator says it is non-deterministic and scikit-learn skips the consistency checks.)
@parametrize_with_checks([NeuralNetClassifier(**CHECKED), NeuralNetRegressor(**CHECKED),
                          NeuralNetClassifier(early_stopping=True, **CHECKED)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 6)) * 2
    y = rng.integers(0, 3, n)
    return centers[y] + rng.normal(size=(n, 6)) * 3 + 10, np.array(["ant", "bee", "cat"])[y]


def test_pipeline_cross_val_score_and_grid_search():
    X, y = _data()
    pipe = make_pipeline(StandardScaler(), NeuralNetClassifier(**SMALL))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.7
    grid = GridSearchCV(NeuralNetClassifier(**SMALL), {"lr": [1e-4, 1e-2], "hidden_layer_sizes": [(4,), (16,)]}, cv=2)
    grid.fit(StandardScaler().fit_transform(X), y)
    assert grid.best_params_["lr"] == 1e-2  # 60 epochs at 1e-4 do not get far
    assert set(grid.classes_) == {"ant", "bee", "cat"}


def test_clone_pickle_and_string_labels():
    X, y = _data()
    clf = NeuralNetClassifier(**SMALL).fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "model_")
    np.testing.assert_array_equal(twin.fit(X, y).predict_proba(X), clf.predict_proba(X))  # same seed, same model
    back = pickle.loads(pickle.dumps(clf))
    assert isinstance(back.model_, fastnn.nn.Module)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert set(clf.predict(X)) <= {"ant", "bee", "cat"}
    np.testing.assert_allclose(clf.predict_proba(X).sum(1), 1)


def test_partial_fit_is_one_epoch_at_a_time():
    X, y = _data()
    clf = NeuralNetClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="needs classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X, y, classes=["ant", "bee", "cat"])
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    once = NeuralNetClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(once.model_.flat_parameters(), clf.model_.flat_parameters())  # 2 epochs either way
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:3], ["dog"] * 3)


def test_regressor_multi_output_and_early_stopping():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    Y = np.stack([X @ rng.normal(size=4), np.sin(X[:, 0])], 1)
    reg = NeuralNetRegressor(hidden_layer_sizes=(32,), epochs=100, lr=1e-2, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (200, 2) and reg.score(X, Y) > 0.8
    stop = NeuralNetRegressor(hidden_layer_sizes=(32,), epochs=500, lr=1e-2, early_stopping=True, n_iter_no_change=3,
                              random_state=0).fit(X, Y[:, 0])
    assert stop.n_iter_ < 500 and len(stop.validation_scores_) == stop.n_iter_
    assert stop.predict(X).shape == (200,)


def test_a_module_factory_and_bad_parameters():
    X, y = _data(60)
    seen = []

    def factory(n_in, n_out):
        seen.append((n_in, n_out))
        return fastnn.nn.Sequential(fastnn.nn.Linear(n_in, n_out))

    NeuralNetClassifier(module=factory, epochs=2).fit(X, y)
    assert seen == [(6, 3)]
    for params, message in [({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"), ({"activation": "swish"}, "activation"),
                            ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"module": 3}, "module")]:
        with pytest.raises((ValueError, TypeError), match=message):
            NeuralNetClassifier(**params).fit(X, y)
