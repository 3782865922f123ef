"""scikit-learn estimators around fastnn models (optional extra: ``pip install fastnn[sklearn]``).

    from fastnn.sklearn import NeuralNetClassifier
    clf = NeuralNetClassifier(hidden_layer_sizes=(64,), epochs=20, random_state=0).fit(X, y)
    cross_val_score(make_pipeline(StandardScaler(), clf), X, y)
    GridSearchCV(clf, {"lr": [1e-3, 1e-2]}).fit(X, y)

The parameters follow MLPClassifier's where they mean the same (hidden_layer_sizes, activation,
batch_size, early_stopping, validation_fraction, n_iter_no_change, tol, random_state); `epochs`
is its max_iter, `lr` its learning_rate_init, `drop_last` fit's (skip each epoch's incomplete last batch). ``module=`` takes a function
``(n_features, n_outputs) -> fastnn Module`` instead of the MLP. Training runs in fastnn's C++
epoch loop. A pickled estimator holds its model as fastnn model bytes (fastnn.io.to_bytes).
"""

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError("fastnn.sklearn needs scikit-learn: pip install 'fastnn[sklearn]'") from e

from . import io as _io
from . import nn as _nn
from .train.callbacks import EarlyStopping
from .train.fit import fit as _fit
from .train.fit import predict as _predict
from .tune.trial import make_optimizer, seeded

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor"]

_ACTIVATIONS = {"relu": _nn.ReLU, "tanh": _nn.Tanh, "logistic": _nn.Sigmoid, "sigmoid": _nn.Sigmoid, "elu": _nn.ELU,
                "identity": _nn.Identity}


def _mlp(n_features, n_outputs, hidden_layer_sizes, activation, dtype):
    layers, width = [], n_features
    for h in hidden_layer_sizes:
        layers += [_nn.Linear(width, int(h), dtype=dtype), _ACTIVATIONS[activation](dtype=dtype)]
        width = int(h)
    layers.append(_nn.Linear(width, n_outputs, dtype=dtype))
    return _nn.Sequential(*layers)


class _NeuralNet(BaseEstimator):
    _loss = None

    def __init__(self, hidden_layer_sizes=(100,), module=None, activation="relu", optimizer="adam", lr=1e-3,
                 epochs=200, batch_size=32, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, random_state=None, dtype="float32", verbose=0, drop_last=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.module = module
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose
        self.drop_last = drop_last

    # -- parameters, checked at fit (scikit-learn's convention: __init__ only stores them) --
    def _check_params(self):
        name = type(self).__name__
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, (int, np.integer)) else tuple(sizes)
        if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in sizes):
            raise ValueError(f"{name}: hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        if self.module is not None and not callable(self.module):
            raise TypeError(f"{name}: module must be a function (n_features, n_outputs) -> fastnn Module")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"{name}: activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.dtype not in ("float32", "float64", np.float32, np.float64):
            raise ValueError(f"{name}: dtype must be 'float32' or 'float64', got {self.dtype!r}")
        for param, low in (("epochs", 1), ("batch_size", 1), ("n_iter_no_change", 1)):
            v = getattr(self, param)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name}: {param} must be an integer >= {low}, got {v!r}")
        if not isinstance(self.drop_last, (bool, np.bool_)):
            raise TypeError(f"{name}: drop_last must be True or False, got {self.drop_last!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"{name}: validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if not self.lr > 0:
            raise ValueError(f"{name}: lr must be > 0, got {self.lr!r}")
        return sizes

    def _build(self, n_features, n_outputs, seed):
        sizes = self._check_params()
        dtype = np.dtype(self.dtype)
        with seeded(seed):
            model = self.module(n_features, n_outputs) if self.module is not None else \
                _mlp(n_features, n_outputs, sizes, self.activation, dtype)
        if not isinstance(model, _nn.Module):
            raise TypeError(f"{type(self).__name__}: module(n_features, n_outputs) must return a fastnn Module, "
                            f"got {type(model).__name__}")
        return model

    def _train(self, X, y, epochs, callbacks, seed, initial_epoch=0):
        fraction = self.validation_fraction if self.early_stopping else 0.0
        validation = None
        if fraction:
            order = np.random.default_rng([seed, 1]).permutation(len(X))
            n_val = max(1, int(round(fraction * len(X))))
            if n_val >= len(X):
                raise ValueError(f"{type(self).__name__}: early_stopping needs at least 2 samples, got n_samples={len(X)}")
            val, train = order[:n_val], order[n_val:]
            validation, X, y = (X[val], y[val]), X[train], y[train]
        history = _fit(self.model_, X, y, loss=self._loss, optimizer=self.optimizer_, epochs=initial_epoch + epochs,
                       batch_size=self.batch_size, validation_data=validation, seed=seed, callbacks=callbacks,
                       verbose=2 if self.verbose else 0, initial_epoch=initial_epoch, drop_last=self.drop_last)
        self.loss_curve_ = getattr(self, "loss_curve_", []) + list(history.history.get("loss", []))
        if validation is not None:
            self.validation_scores_ = getattr(self, "validation_scores_", []) + list(history.history.get("val_loss", []))
        self.n_iter_ = getattr(self, "n_iter_", 0) + len(history)
        return history

    def _fit(self, X, y, n_outputs, epochs, reset):
        rng = check_random_state(self.random_state)
        if reset:
            self._seed = int(rng.randint(0, 2**31 - 1))
            self.model_ = self._build(X.shape[1], n_outputs, self._seed)
            self.optimizer_ = make_optimizer(self.model_, self.optimizer, self.lr)
            self.loss_curve_, self.n_iter_ = [], 0
            if self.early_stopping:
                self.validation_scores_ = []
        callbacks = [EarlyStopping("val_loss", min_delta=self.tol, patience=self.n_iter_no_change,
                                   restore_best_weights=True)] if self.early_stopping and reset else None
        self._train(X, y, epochs, callbacks, self._seed, initial_epoch=self.n_iter_)
        return self

    def _outputs(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return _predict(self.model_, X).astype(np.float64)

    # A fitted estimator pickles (joblib, GridSearchCV with n_jobs) with its model as fastnn bytes.
    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ("model_", "optimizer_"):
            state.pop(key, None)
        if "model_" in self.__dict__:
            state["_model_bytes"] = _io.to_bytes(self.model_, self.optimizer_)
        return state

    def __setstate__(self, state):
        data = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        self.__dict__.setdefault("drop_last", False)  # pickled before the parameter existed
        if data is not None:
            self.model_, self.optimizer_, _ = _io.from_bytes(data, with_optimizer=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class NeuralNetClassifier(ClassifierMixin, _NeuralNet):
    """A fastnn network trained with cross-entropy (softmax over one output per class).

    Attributes after fit: ``classes_``, ``model_`` (the fastnn model; logits), ``n_iter_``,
    ``loss_curve_``, ``validation_scores_`` (validation losses, with early_stopping)."""

    _loss = "cross_entropy"

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        return self._fit(X, encoded.astype(np.int64), len(self.classes_), self.epochs, reset=True)

    def partial_fit(self, X, y, classes=None):
        """One epoch on (X, y); the first call needs `classes` (all labels, as in scikit-learn)."""
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, reset=first, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("NeuralNetClassifier.partial_fit: the first call needs classes= (all the labels)")
            self.classes_ = np.unique(classes)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"NeuralNetClassifier.partial_fit: classes={classes!r} differ from the first call's "
                             f"{self.classes_!r}")
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if len(unknown):
            raise ValueError(f"NeuralNetClassifier.partial_fit: labels {unknown!r} are not in classes {self.classes_!r}")
        encoded = np.searchsorted(self.classes_, y).astype(np.int64)
        return self._fit(X, encoded, len(self.classes_), 1, reset=first)

    def predict_proba(self, X):
        logits = self._outputs(X)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X):
        check_is_fitted(self, "model_")
        return self.classes_[self._outputs(X).argmax(axis=1)]


class NeuralNetRegressor(RegressorMixin, _NeuralNet):
    """A fastnn network trained with mean squared error; y (N,) or (N, outputs).

    Attributes after fit: ``model_``, ``n_iter_``, ``loss_curve_``, ``validation_scores_``."""

    _loss = "mse"

    def _targets(self, X, y, reset):
        X, y = validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32])
        if reset:
            self._y_1d = y.ndim == 1
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if not reset and y2.shape[1] != self.n_outputs_:
            raise ValueError(f"NeuralNetRegressor.partial_fit: y has {y2.shape[1]} outputs, the model {self.n_outputs_}")
        return X, y2

    def fit(self, X, y):
        X, y = self._targets(X, y, True)
        self.n_outputs_ = y.shape[1]
        return self._fit(X, y, y.shape[1], self.epochs, reset=True)

    def partial_fit(self, X, y):
        """One epoch on (X, y) (the first call builds the model)."""
        first = not hasattr(self, "model_")
        X, y = self._targets(X, y, first)
        if first:
            self.n_outputs_ = y.shape[1]
        return self._fit(X, y, y.shape[1], 1, reset=first)

    def predict(self, X):
        out = self._outputs(X)
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
