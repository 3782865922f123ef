"""Data and models shared by the training tests: small synthetic problems and a Fashion-MNIST subset."""

import functools

import numpy as np

import fastnn
from fastnn import nn

FEATURES, CLASSES = 12, 4


def blobs(n=240, features=FEATURES, classes=CLASSES, seed=0, dtype=np.float32):
    """A learnable classification problem: labels are the argmax of a fixed random linear map plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    W = np.random.default_rng(99).normal(size=(features, classes))
    y = np.argmax(X @ W + 0.3 * rng.normal(size=(n, classes)), axis=1).astype(np.int64)
    return X.astype(dtype), y


def mlp(features=FEATURES, hidden=16, classes=CLASSES, batchnorm=False, dropout=0.0, dtype=np.float32, seed=0):
    """Linear-[BN]-ReLU-[Dropout]-Linear with initial weights fixed by `seed`."""
    fastnn.manual_seed(seed)
    layers = [nn.Linear(features, hidden, dtype=dtype)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(hidden, dtype=dtype))
    layers.append(nn.ReLU())
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, classes, dtype=dtype))
    return nn.Sequential(*layers)


def fresh_copy(model, builder):
    """A new model from `builder()` holding `model`'s current parameters and running statistics."""
    other = builder()
    other.load_state_dict(model.state_dict())
    return other


def assert_state_equal(a, b, exact=True, **tol):
    """Two state_dicts (or models) have the same keys and equal (or allclose) values."""
    a = a.state_dict() if hasattr(a, "state_dict") else a
    b = b.state_dict() if hasattr(b, "state_dict") else b
    assert list(a) == list(b)
    for key in a:
        if exact:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            np.testing.assert_allclose(a[key], b[key], err_msg=key, **tol)


def state_differs(a, b):
    return any(not np.array_equal(a[k], b[k]) for k in a)


def metrics(history):
    """History values without the wall-clock times (which never repeat)."""
    return {k: v for k, v in history.history.items() if k != "seconds"}


@functools.lru_cache(maxsize=None)
def _fashion_subset():
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(path="bundled")
    return X, y, Xt, yt


def fashion_subset(n_train=3000, n_test=1000):
    """The first n_train bundled Fashion-MNIST training images (shuffled once, all classes) and n_test test images."""
    X, y, Xt, yt = _fashion_subset()
    order = np.random.default_rng(0).permutation(len(X))[:n_train]
    return X[order], y[order], Xt[:n_test], yt[:n_test]


def epoch_order(n, seed, epoch):
    """fit's documented order (cpp/include/fastnn/net/train.h epoch_order): Fisher-Yates from the last
    index down, j = (bits(key, i) * (i + 1)) >> 64 with key = stream_key(seed ^ 0x5eed5eed5eed5eed, epoch)."""
    from fastnn.reference import rng

    key = int(rng.stream_key(seed ^ 0x5EED5EED5EED5EED, epoch))
    draws = rng.bits(key, n)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = (int(draws[i]) * (i + 1)) >> 64
        order[i], order[j] = order[j], order[i]
    return np.array(order)
