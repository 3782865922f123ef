"""im2col / col2im: C++ vs the reference (exact for the copy, summed-term bounds for the adjoint),
the adjoint identity on the C++ pair, the same bits on 1 and 2 threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, assert_sum_close, num_threads, random_array
from tests.reference.test_im2col import CASES as REFERENCE_CASES

# The reference's cases plus odd channel counts, a tall and a wide image, and one large enough
# for both threads.
CASES = REFERENCE_CASES + [
    ((1, 17, 7, 5), 3, 2, 1, 1),
    ((2, 3, 31, 4), (5, 1), (1, 3), (2, 0), (2, 1)),
    ((1, 2, 3, 33), (1, 7), 1, (0, 3), (1, 3)),
    ((4, 8, 20, 21), 3, 1, 1, 1),
]


def _kernel_taps(k):
    return int(np.prod(np.broadcast_to(k, 2)))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(rng, case, dtype):
    shape, *geometry = case
    x = random_array(rng, shape, dtype)
    cols = F.im2col(x, *geometry)
    np.testing.assert_array_equal(cols, R.im2col(x, *geometry))  # a copy: exact
    assert cols.dtype == dtype and cols.flags.c_contiguous
    y = random_array(rng, cols.shape, dtype)
    back = F.col2im(y, shape, *geometry)
    assert back.dtype == dtype and back.shape == shape
    # at most kh*kw taps land on one pixel
    assert_sum_close(back, R.col2im(y, shape, *geometry), R.col2im(np.abs(y), shape, *geometry),
                     _kernel_taps(geometry[0]))


@pytest.mark.parametrize("case", CASES)
def test_col2im_is_the_adjoint_of_im2col(rng, case):
    shape, *geometry = case
    x = random_array(rng, shape, np.float64)
    cols = F.im2col(x, *geometry)
    y = random_array(rng, cols.shape, np.float64)
    lhs, rhs = np.sum(cols * y), np.sum(x * F.col2im(y, shape, *geometry))
    assert_sum_close(rhs, lhs, np.sum(np.abs(cols * y)), cols.size)


def test_keyword_arguments_and_strided_input(rng):
    x = random_array(rng, (2, 3, 9, 8), np.float32)
    view = np.zeros((2, 3, 18, 8), np.float32)[:, :, ::2]
    view[...] = x
    want = R.im2col(x, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    np.testing.assert_array_equal(F.im2col(view, kernel_size=(3, 2), stride=[2, 1], padding=1, dilation=(1, 2)), want)
    y = random_array(rng, want.shape, np.float32)
    got = F.col2im(np.asfortranarray(y), input_shape=list(x.shape), kernel_size=(3, 2), stride=(2, 1), padding=1,
                   dilation=(np.int64(1), 2))
    assert_sum_close(got, R.col2im(y, x.shape, (3, 2), (2, 1), 1, (1, 2)),
                     R.col2im(np.abs(y), x.shape, (3, 2), (2, 1), 1, (1, 2)), 6)


@pytest.mark.parametrize("case", [((4, 8, 20, 21), 3, 1, 1, 1), ((3, 16, 15, 17), (5, 3), 2, 2, (1, 2))])
def test_same_result_with_one_and_two_threads(rng, case):
    shape, *geometry = case
    x = random_array(rng, shape, np.float32)
    y = random_array(rng, R.im2col(x, *geometry).shape, np.float32)
    with num_threads(1):
        c1, b1 = F.im2col(x, *geometry), F.col2im(y, shape, *geometry)
    with num_threads(2):
        c2, b2 = F.im2col(x, *geometry), F.col2im(y, shape, *geometry)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(b1, b2)


X = np.zeros((1, 2, 3, 3))


@pytest.mark.parametrize("impl", [F, R], ids=["cpp", "reference"])
@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda m: m.im2col(X, 3, 1, 1, 3), ValueError,
         r"\[im2col\] the \(dilated\) kernel \(7, 7\) is larger than the padded input \(5, 5\): output size \(-1, -1\)"),
        (lambda m: m.im2col(X, 4), ValueError, r"\[im2col\] the \(dilated\) kernel \(4, 4\) is larger than the padded input \(3, 3\)"),
        (lambda m: m.im2col(X[0], 1), ValueError, r"\[im2col\] x must be \(N, C, H, W\), got \(2, 3, 3\)"),
        (lambda m: m.im2col(X, 1, stride=0), ValueError, r"\[im2col\] stride must be >= 1, got 0"),
        (lambda m: m.im2col(X, 1, padding=(1, -1)), ValueError, r"\[im2col\] padding must be >= 0, got \(1, -1\)"),
        (lambda m: m.im2col(X, 0), ValueError, r"\[im2col\] kernel_size must be >= 1, got 0"),
        (lambda m: m.im2col(X, 1.5), TypeError, r"\[im2col\] kernel_size must be an int or a pair of ints, got 1.5"),
        (lambda m: m.im2col(X, 1, dilation=(1, 2, 3)), TypeError,
         r"\[im2col\] dilation must be an int or a pair of ints, got \(1, 2, 3\)"),
        (lambda m: m.im2col(X, True), TypeError, r"\[im2col\] kernel_size must be an int or a pair of ints, got True"),
        (lambda m: m.col2im(np.zeros((9, 9)), X.shape, 3, padding=1), ValueError,
         r"\[col2im\] cols must be \(N\*P\*Q, C\*kh\*kw\) = \(9, 18\), got \(9, 9\)"),
        (lambda m: m.col2im(np.zeros((9, 18)), X.shape[1:], 3, padding=1), ValueError, r"\[col2im\] input_shape must be \(N, C, H, W\)"),
    ],
)
def test_bad_arguments_as_the_reference(impl, call, exc, match):
    with pytest.raises(exc, match=match):
        call(impl)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: F.im2col(X.astype(np.int32), 1), TypeError, r"\[im2col\] x must be float32 or float64, got int32"),
        (lambda: F.im2col(X.tolist(), 1), TypeError, r"\[im2col\] x must be a numpy.ndarray, got list"),
        (lambda: F.im2col(np.zeros((0, 2, 3, 3)), 1), ValueError, r"\[im2col\] x is empty"),
        (lambda: F.im2col(X, 2**40), ValueError, r"\[im2col\] sizes, kernel, stride and dilation must be in \[1, 2\^31\]"),
        (lambda: F.im2col(X, 2**70), TypeError, r"\[im2col\] kernel_size must be an int or a pair of ints"),
        (lambda: F.im2col(X, 1, padding=2**31), ValueError,
         r"\[im2col\] the patch matrix \(N\*P\*Q, C\*kh\*kw\) = \(1\*4294967299\*4294967299, 2\*1\*1\) is too large"),
        (lambda: F.col2im(np.zeros((9, 18)), (1, 2, 3, 3), 1, padding=2**31), ValueError,
         r"\[col2im\] the patch matrix .* is too large"),
        (lambda: F.col2im(np.zeros((9, 18), np.float16), X.shape, 3, padding=1), TypeError,
         r"\[col2im\] cols must be float32 or float64, got float16"),
        (lambda: F.col2im(np.zeros((9, 18)), (1, 2, 0, 3), 3, padding=1), ValueError, r"\[col2im\] input_shape must be \(N, C, H, W\) of positive ints"),
        (lambda: F.col2im(np.zeros((9, 18)), 5, 3, padding=1), ValueError, r"\[col2im\] input_shape must be"),
    ],
)
def test_bad_arguments_at_the_boundary(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
