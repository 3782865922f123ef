import numpy as np
import pytest

from fastnn import tune


@pytest.fixture(scope="package")
def pool():
    p = tune.LocalPool(n_workers=2, threads_per_worker=1)
    yield p
    p.shutdown()


@pytest.fixture(scope="package")
def fashion():
    import fastnn

    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(path="bundled")
    return X, y, Xt, yt


def blobs(n=200, d=10, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 1.2
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y
