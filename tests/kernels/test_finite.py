"""first_nonfinite (fit's data check): C++ vs the NumPy reference, every position of a block,
several blocks, threads, layouts, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, num_threads

BLOCK = 1 << 14  # kernels/finite.h scans blocks of this many values


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 33, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5])
def test_finds_the_first_nan_or_infinity(rng, dtype, n):
    x = rng.normal(size=n).astype(dtype)
    assert F.first_nonfinite(x) == R.first_nonfinite(x) == -1
    for where in sorted({0, n // 2, n - 1, min(n - 1, BLOCK), min(n - 1, BLOCK - 1)}):
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[where] = bad
            if where + 1 < n:
                y[-1] = np.nan  # a later one must not win
            assert F.first_nonfinite(y) == R.first_nonfinite(y) == where, (where, bad)


def test_huge_finite_values_are_finite(rng):
    """A plain sum of the data overflows to inf here; the check must not call that non-finite."""
    x = np.full(5 * BLOCK, np.finfo(np.float32).max, dtype=np.float32)
    x[::2] *= -1
    assert F.first_nonfinite(x) == -1
    x[4 * BLOCK + 3] = np.inf
    assert F.first_nonfinite(x) == 4 * BLOCK + 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_any_shape_and_layout_gives_the_c_order_index(rng, dtype):
    x = rng.normal(size=(60, 70, 9)).astype(dtype)
    x[41, 3, 2] = np.nan
    x[50, 0, 0] = np.inf
    want = np.ravel_multi_index((41, 3, 2), x.shape)
    assert F.first_nonfinite(x) == want
    f = np.asfortranarray(x)
    assert F.first_nonfinite(f) == want
    assert F.first_nonfinite(x[:, ::2]) == R.first_nonfinite(x[:, ::2])


def test_same_result_with_one_and_two_threads(rng):
    x = rng.normal(size=40 * BLOCK).astype(np.float32)
    x[[7 * BLOCK + 11, 30 * BLOCK]] = np.nan
    with num_threads(1):
        one = F.first_nonfinite(x)
    with num_threads(2):
        two = F.first_nonfinite(x)
    assert one == two == 7 * BLOCK + 11


def test_empty_array_has_nothing_to_find():
    assert F.first_nonfinite(np.zeros((0, 3), np.float32)) == -1


@pytest.mark.parametrize("bad, exc, match", [
    (np.zeros(3, np.int64), TypeError, r"\[first_nonfinite\] x must be float32 or float64"),
    ([1.0, 2.0], TypeError, r"\[first_nonfinite\] x must be a numpy.ndarray, got list"),
])
def test_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        F.first_nonfinite(bad)
