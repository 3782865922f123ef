"""maxout: C++ vs reference, ties and NaN, layouts, finite differences, threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, ODD_SIZES, assert_close, assert_gradient, layouts, num_threads, random_array


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 129])
@pytest.mark.parametrize("c", ODD_SIZES)
@pytest.mark.parametrize("pieces", [1, 2, 3, 5])
def test_matches_reference(rng, dtype, n, c, pieces):
    x = random_array(rng, (n, c * pieces), dtype)
    g = random_array(rng, (n, c), dtype)
    y, argmax = F.maxout_forward(x, pieces)
    ry, rargmax = R.maxout_forward(x, pieces)
    assert argmax.dtype == np.int64 and argmax.shape == (n, c)
    np.testing.assert_array_equal(argmax, rargmax)
    assert_close(y, ry)
    assert_close(F.maxout_backward(g, argmax, pieces), R.maxout_backward(g, rargmax, pieces))


def test_ties_and_nan_follow_numpy_argmax():
    nan = np.nan
    x = np.array([[1.0, 3.0, 3.0, 2.0, 2.0, 2.0, 1.0, nan, nan, nan, 5.0, 9.0]], dtype=np.float32)
    y, argmax = F.maxout_forward(x, 3)
    ry, rargmax = R.maxout_forward(x, 3)
    np.testing.assert_array_equal(argmax, rargmax)  # [1, 0, 1, 0]: first maximum, a NaN counts as the maximum
    np.testing.assert_array_equal(y, ry)


@pytest.mark.parametrize("layout", ["F", "strided"])
def test_non_contiguous_inputs(rng, layout):
    x, g = random_array(rng, (9, 12), np.float64), random_array(rng, (9, 4), np.float64)
    y, a = F.maxout_forward(x, 3)
    y2, a2 = F.maxout_forward(layouts(x)[layout], 3)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(a2, a)
    np.testing.assert_array_equal(F.maxout_backward(layouts(g)[layout], layouts(a)[layout], 3), F.maxout_backward(g, a, 3))


def test_cpp_backward_matches_finite_differences(rng):
    x = rng.permutation(4 * 3 * 4).reshape(4, 12) * 0.1  # distinct values: no ties within eps
    g = rng.standard_normal((4, 3))
    _, argmax = F.maxout_forward(x, 4)
    assert_gradient(lambda: np.sum(g * F.maxout_forward(x, 4)[0]), x, F.maxout_backward(g, argmax, 4))


def test_same_with_one_and_two_threads(rng):
    x, g = random_array(rng, (2000, 256), np.float32), random_array(rng, (2000, 64), np.float32)
    with num_threads(1):
        y1, a1 = F.maxout_forward(x, 4)
        g1 = F.maxout_backward(g, a1, 4)
    with num_threads(2):
        y2, a2 = F.maxout_forward(x, 4)
        g2 = F.maxout_backward(g, a2, 4)
    for u, v in [(y1, y2), (a1, a2), (g1, g2)]:
        np.testing.assert_array_equal(u, v)


f32 = np.ones((2, 6), np.float32)
a64 = np.zeros((2, 3), np.int64)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: F.maxout_forward(np.ones(6, np.float32), 2), ValueError, r"\[maxout_forward\] x must be 2-D \(N, C \* pieces\), got shape \(6,\)"),
        (lambda: F.maxout_forward(f32, 4), ValueError, r"\[maxout_forward\] x.shape\[1\] = 6 is not divisible by pieces = 4"),
        (lambda: F.maxout_forward(f32, 0), ValueError, r"\[maxout_forward\] pieces must be >= 1, got 0"),
        (lambda: F.maxout_forward(f32, 2**70), ValueError, r"\[maxout_forward\] pieces is too large"),
        (lambda: F.maxout_forward(f32, 2.0), TypeError, r"\[maxout_forward\] pieces must be an integer, got 2.0"),
        (lambda: F.maxout_forward(np.ones((0, 6), np.float32), 2), ValueError, r"\[maxout_forward\] x is empty"),
        (lambda: F.maxout_forward(np.ones((2, 6), np.int32), 2), TypeError, r"\[maxout_forward\] x must be float32 or float64, got int32"),
        (lambda: F.maxout_forward([[1.0, 2.0]], 2), TypeError, r"\[maxout_forward\] x must be a numpy.ndarray, got list"),
        (lambda: F.maxout_backward(np.ones((2, 3), np.float32), a64.astype(np.int32), 2), TypeError, r"\[maxout_backward\] argmax must be int64, got int32"),
        (lambda: F.maxout_backward(np.ones((2, 3), np.float32), np.zeros((3, 2), np.int64), 2), ValueError, r"\[maxout_backward\] argmax must have shape \(2, 3\), got \(3, 2\)"),
        (lambda: F.maxout_backward(np.ones((2, 3), np.float32), a64 + 2, 2), ValueError, r"\[maxout_backward\] argmax must lie in \[0, pieces = 2\), got 2 at flat index 0"),
        (lambda: F.maxout_backward(np.ones((2, 3), np.float32), a64 - 1, 2), ValueError, r"\[maxout_backward\] argmax must lie in \[0, pieces = 2\), got -1"),
        (lambda: F.maxout_backward(np.ones(3, np.float32), np.zeros(3, np.int64), 2), ValueError, r"\[maxout_backward\] grad_out must be 2-D \(N, C\), got shape \(3,\)"),
        (lambda: F.maxout_backward(np.ones((2, 3), np.float32), a64, -1), ValueError, r"\[maxout_backward\] pieces must be >= 1, got -1"),
        (lambda: F.maxout_backward(np.ones((2, 3), np.float32), a64.tolist(), 2), TypeError, r"\[maxout_backward\] argmax must be a numpy.ndarray, got list"),
        (lambda: F.maxout_backward(np.ones((2, 3), np.int64), a64, 2), TypeError, r"\[maxout_backward\] grad_out must be float32 or float64"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
