"""Dropout kernels: masks bit-identical to the NumPy reference, y and grad vs reference, threads,
statistics of the C++ mask, identity cases, layouts, finite differences on the C++ backward, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, ODD_SIZES, assert_close, assert_gradient, layouts, num_threads, random_array

SHAPES = [(n,) for n in ODD_SIZES] + [(1, 33), (7, 31), (3, 5, 129), (1000,), (4099,), (2, 3, 4, 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p,seed,step", [(0.5, 0, 0), (0.1, 1, 7), (0.9, 2**64 - 1, 2**64 - 1), (0.37, 12345, 2**40)])
def test_matches_reference(rng, dtype, shape, p, seed, step):
    x = random_array(rng, shape, dtype)
    y, mask = F.dropout_forward(x, p, seed, step)
    want_y, want_mask = R.dropout_forward(x, p, seed, step)
    assert mask.dtype == bool and mask.shape == x.shape
    np.testing.assert_array_equal(mask, want_mask)  # bit-identical RNG, not merely close
    assert_close(y, want_y)
    g = random_array(rng, shape, dtype)
    assert_close(F.dropout_backward(g, mask, p), R.dropout_backward(g, mask, p))


@pytest.mark.parametrize("p", [1e-9, 0.25, 0.5, 0.75, 1 - 1e-9])
def test_mask_bit_identical_for_many_p(rng, p):
    x = np.ones(5003, np.float32)
    for step in range(3):
        np.testing.assert_array_equal(F.dropout_forward(x, p, 99, step)[1], R.dropout_forward(x, p, 99, step)[1])


def test_numpy_integer_seed_and_step():
    x = np.ones(100)
    want = R.dropout_forward(x, 0.5, 3, 4)[1]
    np.testing.assert_array_equal(F.dropout_forward(x, 0.5, np.uint64(3), np.int32(4))[1], want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["F", "strided"])
def test_layouts(rng, dtype, layout):
    base = random_array(rng, (9, 13), dtype)
    x = layouts(base)[layout]
    y, mask = F.dropout_forward(x, 0.5, 4, 5)
    want_y, want_mask = R.dropout_forward(base, 0.5, 4, 5)  # mask index = C-order index of the values
    np.testing.assert_array_equal(mask, want_mask)
    assert_close(y, want_y)
    g = layouts(random_array(rng, (9, 13), dtype))[layout]
    m = np.asfortranarray(mask) if layout == "F" else layouts(mask)[layout]
    assert_close(F.dropout_backward(g, m, 0.5), R.dropout_backward(np.ascontiguousarray(g), mask, 0.5))


def test_same_result_with_one_and_two_threads(rng):
    x = random_array(rng, (1 << 20) + 13, np.float32)
    with num_threads(1):
        y1, m1 = F.dropout_forward(x, 0.3, 8, 9)
        g1 = F.dropout_backward(x, m1, 0.3)
    with num_threads(2):
        y2, m2 = F.dropout_forward(x, 0.3, 8, 9)
        g2 = F.dropout_backward(x, m2, 0.3)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_keep_rate_within_five_sigma(p):
    n = 10**6
    _, mask = F.dropout_forward(np.ones(n, np.float32), p, 11, 0)
    assert abs(mask.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)


def test_masks_differ_across_steps_and_seeds():
    x = np.ones(1 << 16, np.float32)
    m = [F.dropout_forward(x, 0.5, seed, step)[1] for seed, step in [(0, 0), (0, 1), (1, 0), (1, 1)]]
    for i in range(4):
        for j in range(i + 1, 4):
            assert abs((m[i] == m[j]).mean() - 0.5) < 5 * 0.5 / np.sqrt(x.size)


def test_expectation_is_x(rng):
    x = rng.uniform(0.5, 2.0, size=1000)
    p, steps = 0.5, 400
    mean = np.mean([F.dropout_forward(x, p, 3, s)[0] for s in range(steps)], axis=0)
    sigma = x * np.sqrt(p / (1 - p) / steps)
    assert (np.abs(mean - x) < 5 * sigma).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(p=0.0), dict(p=0.5, training=False), dict(p=0.0, training=False)])
def test_identity_when_p_is_zero_or_eval(rng, dtype, kwargs):
    x = random_array(rng, (33, 7), dtype)
    x[0, 0] = np.inf
    y, mask = F.dropout_forward(x, seed=1, step=2, **kwargs)
    np.testing.assert_array_equal(y, x)
    assert y.dtype == dtype and not np.shares_memory(y, x)
    assert mask.dtype == bool and mask.shape == x.shape and mask.all()
    g = random_array(rng, x.shape, dtype)
    np.testing.assert_array_equal(F.dropout_backward(g, mask, 0.0), g)  # eval mode's gradient: p = 0


def test_cpp_gradient(rng):
    x = rng.normal(size=(5, 7))
    up = rng.normal(size=x.shape)
    _, mask = F.dropout_forward(x, 0.4, 2, 9)
    analytic = F.dropout_backward(up, mask, 0.4)
    assert_gradient(lambda: float((up * F.dropout_forward(x, 0.4, 2, 9)[0]).sum()), x, analytic)


def test_dropped_non_finite_values_give_nan_like_the_reference():
    x = np.full(64, np.inf, np.float32)
    y, mask = F.dropout_forward(x, 0.5, 0, 0)
    with np.errstate(invalid="ignore"):
        want, _ = R.dropout_forward(x, 0.5, 0, 0)
    np.testing.assert_array_equal(y, want)  # inf * 0 = nan, as x * mask / (1 - p) gives
    assert np.isnan(y[~mask]).all() and np.isinf(y[mask]).all()


X = np.ones((3, 4), np.float32)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((X, 1.0), {}, ValueError, r"\[dropout_forward\] p must be in \[0, 1\), got 1.0"),
        ((X, -0.5), {}, ValueError, r"p must be in \[0, 1\), got -0.5"),
        ((X, float("nan")), {}, ValueError, r"p must be finite, got nan"),
        ((X, float("inf")), {}, ValueError, r"p must be finite"),
        ((X, 1.5), dict(training=False), ValueError, r"p must be in \[0, 1\)"),
        ((X, "0.5"), {}, TypeError, r"p must be a real number, got str"),
        ((X, 0.5, -1), {}, ValueError, r"seed must be a non-negative integer < 2\*\*64, got -1"),
        ((X, 0.5, 2**64), {}, ValueError, r"seed must be a non-negative integer < 2\*\*64, got 18446744073709551616"),
        ((X, 0.5, 0, -3), {}, ValueError, r"step must be a non-negative integer < 2\*\*64, got -3"),
        ((X, 0.5, 1.5), {}, TypeError, r"seed must be an integer, got float"),
        ((X, 0.5, 0, None), {}, TypeError, r"step must be an integer, got NoneType"),
        ((X.astype(np.int32),), {}, TypeError, r"x must be float32 or float64, got int32"),
        ((X.tolist(),), {}, TypeError, r"x must be a numpy.ndarray, got list"),
        ((np.zeros((0, 4), np.float32),), {}, ValueError, r"x is empty"),
    ],
)
def test_forward_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=r"^\[dropout_forward\] .*" + match.replace(r"\[dropout_forward\] ", "")):
        F.dropout_forward(*args, **kwargs)


@pytest.mark.parametrize(
    "g,mask,p,exc,match",
    [
        (X, np.ones((3, 4), np.uint8), 0.5, TypeError, r"mask must be bool, got uint8"),
        (X, np.ones((4, 3), bool), 0.5, ValueError, r"mask must have shape \(3, 4\), got \(4, 3\)"),
        (X, np.ones(12, bool), 0.5, ValueError, r"mask must have shape \(3, 4\), got \(12,\)"),
        (X, [True] * 12, 0.5, TypeError, r"mask must be a numpy.ndarray, got list"),
        (X, np.ones((3, 4), bool), 1.0, ValueError, r"p must be in \[0, 1\)"),
        (X, np.ones((3, 4), bool), float("nan"), ValueError, r"p must be finite"),
        (X.astype(np.float16), np.ones((3, 4), bool), 0.5, TypeError, r"grad_out must be float32 or float64, got float16"),
        (np.zeros(0, np.float32), np.ones(0, bool), 0.5, ValueError, r"grad_out is empty"),
    ],
)
def test_backward_bad_input(g, mask, p, exc, match):
    with pytest.raises(exc, match=r"^\[dropout_backward\] " + match):
        F.dropout_backward(g, mask, p)
