"""fastnn.train.cache_features: the frozen part's eval-mode outputs, computed once; training a new top
on them is training the whole model with that part frozen (and in eval mode)."""

import copy

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn.train import cache_features
from tests.conftest import DTYPES, assert_sum_close, network_terms, sum_bound
from tests.train.cases import CLASSES, FEATURES, blobs

HIDDEN, TOP = 16, 8


def _bottom(dtype, X, y):
    """Linear-BatchNorm-ReLU with trained weights and non-trivial running statistics."""
    fastnn.manual_seed(1)
    bottom = nn.Sequential(nn.Linear(FEATURES, HIDDEN, dtype=dtype), nn.BatchNorm1d(HIDDEN, dtype=dtype), nn.ReLU())
    fastnn.fit(nn.Sequential(bottom, nn.Linear(HIDDEN, CLASSES, dtype=dtype)), X, y, epochs=2, batch_size=16,
               verbose=0, seed=4)
    return bottom


def _top(dtype):
    fastnn.manual_seed(2)
    return nn.Sequential(nn.Linear(HIDDEN, TOP, dtype=dtype), nn.Tanh(), nn.Linear(TOP, CLASSES, dtype=dtype))


def _numpy_bottom(bottom, X):
    """Linear -> BatchNorm in eval (running statistics) -> ReLU, in float64 NumPy."""
    lin, bn = bottom[0], bottom[1]
    z = X.astype(np.float64) @ np.asarray(lin.weight, np.float64).T + np.asarray(lin.bias, np.float64)
    z = (z - bn.running_mean) / np.sqrt(np.asarray(bn.running_var, np.float64) + bn.eps)
    return np.maximum(z * np.asarray(bn.weight, np.float64) + np.asarray(bn.bias, np.float64), 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, batch_size", [(1, 256), (37, 8), (300, 256)])
def test_cached_features_are_the_eval_mode_outputs(dtype, n, batch_size):
    X, y = blobs(n, dtype=dtype, seed=3)
    Xtrain, ytrain = blobs(96, dtype=dtype)
    bottom = _bottom(dtype, Xtrain, ytrain).requires_grad_(False)
    bottom.append(nn.Dropout(0.5))  # off in eval mode
    features = cache_features(bottom, X, batch_size=batch_size)
    assert features.shape == (n, HIDDEN) and features.dtype == dtype
    terms, k = network_terms(bottom, X)
    assert_sum_close(features, _numpy_bottom(bottom, X).astype(dtype), terms, k)
    assert bottom.training  # computed in eval mode, the part's own mode left as it was


def _sgd(model):
    return optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_the_top_on_cached_features_is_training_the_model_with_the_bottom_frozen(dtype):
    X, y = blobs(150, dtype=dtype)
    bottom = _bottom(dtype, X, y).requires_grad_(False).eval()
    top = _top(dtype)
    cached_top, stepped_top = copy.deepcopy(top), copy.deepcopy(top)
    model = nn.Sequential(bottom, top)
    kw = dict(epochs=3, batch_size=16, seed=7, shuffle=False, verbose=0)
    fastnn.fit(model, X, y, optimizer=_sgd(model), **kw)
    features = cache_features(bottom, X)
    fastnn.fit(cached_top, features, y, optimizer=_sgd(cached_top), **kw)

    # The terms: each parameter is its start plus every step's update, an update being a sum over
    # the batch of products through the top (fan-in <= HIDDEN + 1), so its rounding is bounded by
    # eps sqrt(k) (|start| + sum over steps of |update|); the sum of |update| is taken from the same
    # steps replayed one train_step at a time.
    opt, moved = _sgd(stepped_top), {k: np.zeros_like(v) for k, v in top.state_dict().items()}
    steps = 0
    for _ in range(kw["epochs"]):
        for i in range(0, len(X), kw["batch_size"]):
            before = stepped_top.state_dict()
            fastnn.train_step(stepped_top, features[i:i + kw["batch_size"]], y[i:i + kw["batch_size"]],
                              "cross_entropy", opt)
            for k, v in stepped_top.state_dict().items():
                moved[k] += np.abs(v - before[k])
            steps += 1
    start = _top(dtype).state_dict()
    k = steps * kw["batch_size"] * (HIDDEN + 1)
    for key, value in cached_top.state_dict().items():
        terms = np.abs(start[key]) + moved[key]
        assert_sum_close(value, top.state_dict()[key], terms, k, err_msg=key)
        assert_sum_close(stepped_top.state_dict()[key], value, terms, k, err_msg=key)
    assert all(moved[key].max() > 0 for key in moved)  # the top trained
    np.testing.assert_array_equal(cache_features(bottom, X), features)  # the bottom did not

    # The same fit with the bottom frozen but in training mode (BatchNorm on batch statistics)
    # trains the top differently: the comparison above would catch a cache of the wrong mode.
    bottom.train()
    other_top = _top(dtype)
    fastnn.fit(nn.Sequential(bottom, other_top), X, y, optimizer=_sgd(other_top), **kw)
    assert any(np.any(np.abs(other_top.state_dict()[key] - v) > 100 * sum_bound(np.abs(start[key]) + moved[key], k,
                                                                                 dtype))
               for key, v in top.state_dict().items())


def test_the_dropout_of_a_frozen_slice_in_eval_mode_stays_off_in_fit():
    """model[:-1].requires_grad_(False).eval() sets its children's modes (fit never sees the slice):
    its Dropout stays off, as in cache_features, so fit trains the head as if it were an Identity."""
    X, y = blobs(60, dtype=np.float64)

    def model(middle):
        fastnn.manual_seed(5)
        return nn.Sequential(nn.Linear(FEATURES, HIDDEN, dtype=np.float64), nn.ReLU(), middle,
                             nn.Linear(HIDDEN, CLASSES, dtype=np.float64))

    with_dropout, with_identity = model(nn.Dropout(0.9)), model(nn.Identity())
    for m in (with_dropout, with_identity):
        m[:-1].requires_grad_(False).eval()
        fastnn.fit(m, X, y, optimizer=_sgd(m), epochs=2, batch_size=16, seed=3, verbose=0)
    np.testing.assert_array_equal(with_dropout[-1].weight, with_identity[-1].weight)
    assert not with_dropout[2].training and with_dropout[-1].training  # the modes as the user set them
    # after a trainable layer a Dropout trains, also when model.eval() turned it off
    active = model(nn.Dropout(0.9)).eval()
    fastnn.fit(active, X, y, optimizer=_sgd(active), epochs=2, batch_size=16, seed=3, verbose=0)
    assert active[2].training and active[0].training
    trained = model(nn.Identity()).eval()
    fastnn.fit(trained, X, y, optimizer=_sgd(trained), epochs=2, batch_size=16, seed=3, verbose=0)
    assert not np.array_equal(active[-1].weight, trained[-1].weight)


def test_a_part_with_trainable_parameters_in_training_mode_is_refused():
    X, _ = blobs(20)
    part = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU())
    with pytest.raises(ValueError, match=r"cache_features: frozen_part must be frozen or in eval mode, .*"
                                         r"\(0\.weight, 0\.bias, 1\.weight, 1\.bias\).*requires_grad_\(False\)"):
        cache_features(part, X)
    part[1].requires_grad_(False)  # the Linear is still trainable and training
    with pytest.raises(ValueError, match=r"\(0\.weight, 0\.bias\)"):
        cache_features(part, X)
    eval_copy = copy.deepcopy(part).eval()  # in eval mode, though trainable: a snapshot the user chose
    np.testing.assert_array_equal(cache_features(eval_copy, X), fastnn.predict(part, X))
    part.requires_grad_(False)  # frozen, in training mode: computed in eval mode all the same
    np.testing.assert_array_equal(cache_features(part, X), fastnn.predict(part, X))
    assert cache_features(nn.Sequential(nn.ReLU()), X).shape == X.shape  # no parameters: nothing to train


def test_cache_features_checks_its_arguments():
    X, _ = blobs(20)
    part = nn.Sequential(nn.Linear(FEATURES, HIDDEN)).requires_grad_(False)
    with pytest.raises(TypeError, match=r"cache_features: frozen_part must be a fastnn.nn.Module, got function"):
        cache_features(lambda x: x, X)
    for bad in (0, 2.5, True):
        with pytest.raises((TypeError, ValueError), match=r"cache_features.*batch_size"):
            cache_features(part, X, batch_size=bad)
    with pytest.raises(ValueError, match=r"X has shape \(20, 5\)"):
        cache_features(part, X[:, :5])
    with pytest.raises(ValueError, match=r"NaN"):
        cache_features(part, np.full((3, FEATURES), np.nan, np.float32))
    assert cache_features(part, np.zeros((0, FEATURES), np.float32)).shape == (0, HIDDEN)
    assert cache_features(part, X.astype(np.float64)).dtype == np.float32  # the part's dtype
