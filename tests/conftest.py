"""Shared test vocabulary: dtypes and their tolerances, odd sizes, comparison and gradient helpers."""

import contextlib

import numpy as np
import pytest

import fastnn

DTYPES = [np.float32, np.float64]

# C++ vs reference. float32 sums of a few thousand terms differ in the last bits, hence atol.
TOL = {
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-10, atol=1e-12),
}

# Around SIMD widths (16 floats / 8 doubles per AVX-512 register) and a batch of one.
ODD_SIZES = [1, 7, 31, 32, 33, 129]


def tol(dtype, scale=1.0):
    t = TOL[np.dtype(dtype).type]
    return dict(rtol=t["rtol"] * scale, atol=t["atol"] * scale)


def assert_close(actual, expected, dtype=None, scale=1.0, err_msg=""):
    """Same shape and dtype as expected, values within the dtype's tolerance (times scale)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape} {err_msg}"
    dtype = np.dtype(dtype or expected.dtype)
    assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype} {err_msg}"
    np.testing.assert_allclose(actual, expected, err_msg=err_msg, **tol(dtype, scale))


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every element of float64 array x (in place)."""
    assert x.dtype == np.float64
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def assert_gradient(f, x, analytic, eps=1e-6, rtol=1e-6, atol=1e-8):
    """analytic must match central differences of the scalar f() with respect to x."""
    numeric = numerical_gradient(f, x, eps)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)


@contextlib.contextmanager
def num_threads(n):
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(n)
    try:
        yield
    finally:
        fastnn.set_num_threads(old)


def random_array(rng, shape, dtype, low=-2.0, high=2.0):
    return rng.uniform(low, high, size=shape).astype(dtype)


def layouts(a):
    """The same values as C order, Fortran order, and a strided (every other row) view."""
    f = np.asfortranarray(a)
    padded = np.zeros((a.shape[0] * 2,) + a.shape[1:], dtype=a.dtype)
    padded[::2] = a
    return {"C": a, "F": f, "strided": padded[::2]}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


try:  # torch is an optional, independent oracle
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

requires_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
