"""softmax / log_softmax: C++ vs reference, layouts, finite differences, threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, ODD_SIZES, TOL, assert_close, assert_gradient, assert_sum_close, layouts, num_threads, random_array
from tests.reference.test_softmax import softmax_terms

OPS = ["softmax", "log_softmax"]
SHAPES = [(n,) for n in ODD_SIZES] + [(1, 7), (33, 31), (7, 32), (2, 3, 129), (4, 1000), (1, 1)]


def forward_backward(mod, op, x, g):
    y = getattr(mod, f"{op}_forward")(x)
    return y, getattr(mod, f"{op}_backward")(g, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", OPS)
def test_matches_reference(rng, op, shape, dtype):
    x, g = random_array(rng, shape, dtype, -5, 5), random_array(rng, shape, dtype)
    y, gi = forward_backward(F, op, x, g)
    ry, rgi = forward_backward(R, op, x, g)
    ty, tg, k = softmax_terms(op, x, ry, g)
    assert_sum_close(y, ry, ty, k, rtol=TOL[dtype]["rtol"])  # exp and log round after the sum
    assert_sum_close(gi, rgi, tg, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_large_and_constant_rows(op, dtype):
    x = np.array([[1000.0, -1000.0, 999.0], [-5000.0, -5001.0, -5002.0], [3.0, 3.0, 3.0]], dtype=dtype)
    y, _ = forward_backward(F, op, x, np.ones_like(x))
    assert np.all(np.isfinite(y))
    assert_close(y, getattr(R, f"{op}_forward")(x))


@pytest.mark.parametrize("layout", ["F", "strided"])
@pytest.mark.parametrize("op", OPS)
def test_non_contiguous_inputs(rng, op, layout):
    x, g = random_array(rng, (9, 13), np.float64), random_array(rng, (9, 13), np.float64)
    y, gi = forward_backward(F, op, x, g)
    y2, gi2 = forward_backward(F, op, layouts(x)[layout], layouts(g)[layout])
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(gi2, gi)


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 2, 3)])
@pytest.mark.parametrize("op", OPS)
def test_cpp_backward_matches_finite_differences(rng, op, shape):
    x, g = rng.uniform(-3, 3, size=shape), rng.standard_normal(shape)
    forward = getattr(F, f"{op}_forward")
    _, gi = forward_backward(F, op, x, g)
    assert_gradient(lambda: np.sum(g * forward(x)), x, gi)


@pytest.mark.parametrize("shape", [(257, 1000), (3000, 10)])
@pytest.mark.parametrize("op", OPS)
def test_same_with_one_and_two_threads(rng, op, shape):
    x, g = random_array(rng, shape, np.float32, -5, 5), random_array(rng, shape, np.float32)
    with num_threads(1):
        one = forward_backward(F, op, x, g)
    with num_threads(2):
        two = forward_backward(F, op, x, g)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("op", OPS)
def test_bad_input(op):
    f32 = np.ones((2, 3), np.float32)
    fwd, bwd = getattr(F, f"{op}_forward"), getattr(F, f"{op}_backward")
    name = rf"\[{op}_forward\]"
    with pytest.raises(ValueError, match=name + r" x must have at least 1 dimension, got shape \(\)"):
        fwd(np.array(1.0, np.float32))
    with pytest.raises(ValueError, match=name + r" x is empty \(shape \(2, 0\)\)"):
        fwd(np.ones((2, 0), np.float32))
    with pytest.raises(TypeError, match=name + " x must be float32 or float64, got int64"):
        fwd(np.ones((2, 3), np.int64))
    with pytest.raises(TypeError, match=name + " x must be a numpy.ndarray, got list"):
        fwd([[1.0, 2.0]])
    name = rf"\[{op}_backward\]"
    with pytest.raises(ValueError, match=name + r" y must have shape \(2, 3\), got \(2, 4\)"):
        bwd(f32, np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match=name + " y must be float32 like the other inputs, got float64"):
        bwd(f32, f32.astype(np.float64))
    with pytest.raises(ValueError, match=name + " grad_out must have at least 1 dimension"):
        bwd(np.array(1.0), np.array(1.0))
    with pytest.raises(ValueError, match=name + " y is empty"):
        bwd(f32, np.ones((0, 3), np.float32))
