"""matmul and bmm: C++ vs reference, layouts, out=, threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, ODD_SIZES, assert_sum_close, layouts, matmul_terms, num_threads, random_array


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 7, 33), (7, 31, 1), (33, 129, 32), (129, 64, 7), (256, 300, 129)])
def test_matmul_matches_reference(rng, dtype, m, k, n):
    a, b = random_array(rng, (m, k), dtype), random_array(rng, (k, n), dtype)
    assert_sum_close(F.matmul(a, b), R.matmul(a, b), matmul_terms(a, b), k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_layout", ["C", "F", "strided", "T", "colslice"])
@pytest.mark.parametrize("b_layout", ["C", "F", "T"])
def test_matmul_layouts_read_in_place(rng, dtype, a_layout, b_layout):
    base_a = random_array(rng, (40, 40), dtype)
    base_b = random_array(rng, (33, 17), dtype)
    a = {**layouts(base_a[:33, :]), "T": base_a[:33, :].T.copy().T, "colslice": base_a[:, :33][:33]}[a_layout]
    a = a[:, :33] if a.shape[1] != 33 else a
    b = {**layouts(base_b), "T": base_b.T.copy().T}[b_layout]
    assert_sum_close(F.matmul(a, b), np.asarray(a) @ np.asarray(b), matmul_terms(a, b), 33)


def test_matmul_non_unit_inner_stride_is_copied_correctly(rng):
    a = random_array(rng, (9, 20), np.float32)[:, ::2]
    b = random_array(rng, (10, 4), np.float32)[::-1]
    assert_sum_close(F.matmul(a, b), a @ b, matmul_terms(a, b), 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_out(rng, dtype):
    a, b = random_array(rng, (5, 6), dtype), random_array(rng, (6, 7), dtype)
    out = np.full((5, 7), np.nan, dtype=dtype)
    res = F.matmul(a, b, out=out)
    assert res is not None and np.shares_memory(res, out)
    assert_sum_close(out, a @ b, matmul_terms(a, b), 6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3, 64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 33, 31), (32, 32, 32)])
def test_bmm_matches_reference(rng, dtype, batch, m, k, n):
    a, b = random_array(rng, (batch, m, k), dtype), random_array(rng, (batch, k, n), dtype)
    assert_sum_close(F.bmm(a, b), R.bmm(a, b), matmul_terms(a, b), k)


def test_bmm_strided_batch(rng):
    a = random_array(rng, (8, 5, 6), np.float64)[::2]
    b = random_array(rng, (4, 6, 3), np.float64)
    assert_sum_close(F.bmm(a, b), a @ b, matmul_terms(a, b), 6)


@pytest.mark.parametrize("shape", [(256, 256, 256), (64, 128, 128), (129, 700, 257)])
def test_same_result_with_one_and_two_threads(rng, shape):
    """Threads take blocks aligned to Eigen's register tiles: the bits do not depend on the count."""
    if shape == (64, 128, 128):
        a, b = random_array(rng, shape, np.float64), random_array(rng, shape, np.float64)
        f = F.bmm
    else:
        a, b = random_array(rng, shape[:2], np.float64), random_array(rng, shape[1:], np.float64)
        f = F.matmul
    with num_threads(1):
        one = f(a, b)
    with num_threads(2):
        two = f(a, b)
    assert np.array_equal(one, two)


@pytest.mark.parametrize(
    "a,b,exc,match",
    [
        (np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), ValueError, r"\[matmul\] inner dimensions differ"),
        (np.ones((2, 3), np.float32), np.ones((3, 2), np.float64), TypeError, r"\[matmul\] b must be float32"),
        (np.ones((2, 3), np.int64), np.ones((3, 2), np.int64), TypeError, r"\[matmul\] a must be float32 or float64, got int64"),
        (np.ones(3, np.float32), np.ones((3, 2), np.float32), ValueError, r"\[matmul\] a must be 2-D, got shape \(3,\)"),
        (np.ones((0, 3), np.float32), np.ones((3, 2), np.float32), ValueError, r"\[matmul\] a is empty"),
        ([[1.0]], np.ones((1, 1)), TypeError, r"\[matmul\] a must be a numpy.ndarray, got list"),
        (np.ones((2, 3, 4), np.float32), np.ones((2, 5, 4), np.float32), ValueError, r"\[matmul\] a must be 2-D"),
    ],
)
def test_matmul_bad_input(a, b, exc, match):
    with pytest.raises(exc, match=match):
        F.matmul(a, b)


def test_bmm_bad_input():
    with pytest.raises(ValueError, match=r"\[bmm\] a \(B, M, K\) and b \(B, K, N\) do not match"):
        F.bmm(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=r"\[bmm\] a must be 3-D"):
        F.bmm(np.ones((3, 4)), np.ones((4, 5)))


def test_out_checks():
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[matmul\] out must have shape \(2, 4\), got \(4, 2\)"):
        F.matmul(a, b, out=np.empty((4, 2), np.float32))
    with pytest.raises(TypeError, match=r"\[matmul\] out must be float32"):
        F.matmul(a, b, out=np.empty((2, 4), np.float64))
    with pytest.raises(ValueError, match=r"out is updated in place and must be C-contiguous"):
        F.matmul(a, b, out=np.empty((4, 2), np.float32).T)
    sq = np.ones((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"out must not share memory"):
        F.matmul(sq, sq, out=sq)
    ro = np.empty((2, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"must be writeable"):
        F.matmul(a, b, out=ro)


@pytest.mark.parametrize("n", ODD_SIZES)
def test_matmul_vector_shapes(rng, n):
    a = random_array(rng, (1, n), np.float32)
    b = random_array(rng, (n, 1), np.float32)
    assert_sum_close(F.matmul(a, b), a @ b, matmul_terms(a, b), n)
