"""Pooling kernels: C++ vs the reference, forward and backward (kernel 1/2/3/5, stride 1/2/3,
padding up to k/2, dilation 1/2, ceil_mode, count_include_pad, divisor_override, odd sizes,
channels 1/3/17, batch 1, float32 and float64), finite differences on the C++ kernels themselves,
the 2x2 stride-2 fast path at its edges, the same bits on 1 and 2 threads, bad arguments."""

import itertools

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, assert_gradient, assert_sum_close, num_threads, random_array
from tests.reference.test_pool import ADAPTIVE_CASES
from tests.reference.test_pool import CASES as REFERENCE_CASES


def _sweep():
    """(shape, kernel, stride, padding, dilation, ceil_mode): every kernel x stride x padding <= k/2 x
    dilation x ceil_mode that fits, on shapes cycling through odd sizes, channels 1/3/17 and batch 1."""
    shapes = [(1, 1, 7, 9), (2, 3, 11, 8), (1, 17, 6, 13), (3, 3, 9, 9)]
    cases = []
    for i, (k, s, p, d, ceil) in enumerate(itertools.product((1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2), (False, True))):
        shape = shapes[i % len(shapes)]
        if p > k // 2 or min(shape[2:]) + 2 * p < d * (k - 1) + 1:
            continue
        cases.append((shape, k, s, p, d, ceil))
    return cases


FAST = [  # the 2x2 stride-2 fast path: even and odd sizes (an uncovered last row/column), batch 1
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((1, 17, 9, 7), 2, 2, 0, 1, False),
    ((3, 1, 28, 28), 2, None, 0, 1, True),  # ceil_mode on even sizes: the same windows
    ((1, 3, 7, 9), 2, None, 0, 1, True),  # ceil_mode on odd sizes: partial windows, the generic path
    ((2, 2, 51, 100), 2, None, 0, 1, False),  # even width: chunks of 10 row pairs, the last one partial
    ((1, 1, 5, 1024), 2, None, 0, 1, False),  # one row pair per chunk, filling it
    ((1, 1, 4, 1026), 2, None, 0, 1, False),  # a row pair too wide for a chunk: the unrolled 2x2 pass
    ((1, 1, 4, 2048), 2, None, 0, 1, False),
]
CASES = REFERENCE_CASES + FAST + _sweep()
AVG_CASES = [c for c in CASES if c[4] == 1]


def ids(cases):
    return [f"{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-{'ceil' if c[5] else 'floor'}".replace(" ", "") for c in cases]


def _taps(kernel_size):
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return k[0] * k[1]


def _abs64(a):
    return np.abs(np.asarray(a, np.float64))


# --- max_pool2d ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_matches_reference(rng, case, dtype):
    shape, *geometry = case
    x = random_array(rng, shape, dtype)
    y, indices = F.max_pool2d_forward(x, *geometry)
    ey, eidx = R.max_pool2d_forward(x, *geometry)
    assert y.dtype == dtype and indices.dtype == np.int64 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, ey)  # a selection: exact
    np.testing.assert_array_equal(indices, eidx)
    g = random_array(rng, y.shape, dtype)
    # the same additions in the same (p, q) order as the reference's np.add.at: exact
    np.testing.assert_array_equal(F.max_pool2d_backward(g, indices, shape), R.max_pool2d_backward(g, eidx, shape))


@pytest.mark.parametrize("case", REFERENCE_CASES[2:6] + REFERENCE_CASES[9:] + FAST[1:2],
                         ids=ids(REFERENCE_CASES[2:6] + REFERENCE_CASES[9:] + FAST[1:2]))
def test_max_pool_cpp_backward_matches_finite_differences(rng, case):
    shape, *geometry = case
    shape = (1, 2) + shape[2:]
    x = rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) / 7  # no ties within eps
    y, indices = F.max_pool2d_forward(x, *geometry)
    g = random_array(rng, y.shape, np.float64)
    dx = F.max_pool2d_backward(g, indices, shape)
    assert_gradient(lambda: float(np.sum(F.max_pool2d_forward(x, *geometry)[0] * g)), x, dx)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (2, 1, 0), (3, 1, 1)], ids=["fast", "overlap", "pad"])
def test_max_pool_nan_and_infinity_as_the_reference(kernel, stride, padding):
    x = np.array([[[[1.0, np.nan, 3.0, np.nan], [-np.inf, -np.inf, 2.0, np.nan], [-np.inf, -np.inf, np.inf, 5.0],
                    [np.nan, 0.0, -1.0, -np.inf]]]])
    for dtype in DTYPES:
        xd = x.astype(dtype)
        y, indices = F.max_pool2d_forward(xd, kernel, stride, padding)
        ey, eidx = R.max_pool2d_forward(xd, kernel, stride, padding)
        np.testing.assert_array_equal(y, ey)  # NaN propagates (the later NaN's index); -inf windows keep the first tap
        np.testing.assert_array_equal(indices, eidx)


# The even-width 2x2 pass combines row pairs in whole vectors of 16 (float32) or 8 (float64) outputs
# whose lanes past a row's end are overwritten by the next row's: rows of fewer, as many and more
# outputs than a vector, several chunks of row pairs, an odd last row; values with many ties and NaNs.
@pytest.mark.parametrize("shape", [(2, 3, 9, 14), (1, 2, 6, 32), (3, 1, 7, 34), (1, 2, 90, 36), (1, 1, 5, 1024)],
                         ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_fast_path_ties_and_nans_as_the_reference(rng, shape, dtype):
    x = rng.integers(-2, 3, shape).astype(dtype)
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.05] = -np.inf
    y, indices = F.max_pool2d_forward(x, 2)
    ey, eidx = R.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(indices, eidx)
    with num_threads(2):
        y2, indices2 = F.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(indices2, indices)


def test_max_pool_window_between_the_pixels():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    y, indices = F.max_pool2d_forward(x, 2, 1, 1, 3)
    assert y.tolist() == [[[[-np.inf]]]] and indices.tolist() == [[[[-1]]]]
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones((1, 1, 1, 1)), indices, x.shape), np.zeros_like(x))


# --- avg_pool2d ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", AVG_CASES, ids=ids(AVG_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor_override", [None, 3])
def test_avg_pool_matches_reference(rng, case, dtype, count_include_pad, divisor_override):
    shape, k, s, p, _, ceil_mode = case
    args = (k, s, p, ceil_mode, count_include_pad, divisor_override)
    x = random_array(rng, shape, dtype)
    y = F.avg_pool2d_forward(x, *args)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_sum_close(y, R.avg_pool2d_forward(x, *args), R.avg_pool2d_forward(_abs64(x), *args), _taps(k) + 1)
    g = random_array(rng, y.shape, dtype)
    dx = F.avg_pool2d_backward(g, shape, *args)
    assert_sum_close(dx, R.avg_pool2d_backward(g, shape, *args), R.avg_pool2d_backward(_abs64(g), shape, *args),
                     _taps(k) + 1)


@pytest.mark.parametrize("case", AVG_CASES[2:7], ids=ids(AVG_CASES[2:7]))
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_cpp_backward_matches_finite_differences(rng, case, count_include_pad):
    shape, k, s, p, _, ceil_mode = case
    args = (k, s, p, ceil_mode, count_include_pad)
    x = random_array(rng, shape, np.float64)
    g = random_array(rng, F.avg_pool2d_forward(x, *args).shape, np.float64)
    dx = F.avg_pool2d_backward(g, shape, *args)
    assert_gradient(lambda: float(np.sum(F.avg_pool2d_forward(x, *args) * g)), x, dx)


# --- adaptive and global average ----------------------------------------------------------------

ADAPTIVE = ADAPTIVE_CASES + [((2, 17, 9, 13), (4, 5)), ((1, 3, 7, 7), (None, 1)), ((2, 3, 5, 6), [2, 3]),
                             ((1, 2, 3, 4), None)]


@pytest.mark.parametrize("shape, output_size", ADAPTIVE)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avg_pool_matches_reference(rng, shape, output_size, dtype):
    x = random_array(rng, shape, dtype)
    y = F.adaptive_avg_pool2d_forward(x, output_size)
    assert y.dtype == dtype
    k = shape[2] * shape[3]
    assert_sum_close(y, R.adaptive_avg_pool2d_forward(x, output_size),
                     R.adaptive_avg_pool2d_forward(_abs64(x), output_size), k)
    g = random_array(rng, y.shape, dtype)
    assert_sum_close(F.adaptive_avg_pool2d_backward(g, shape), R.adaptive_avg_pool2d_backward(g, shape),
                     R.adaptive_avg_pool2d_backward(_abs64(g), shape), y.shape[2] * y.shape[3])


@pytest.mark.parametrize("shape, output_size", ADAPTIVE[1:5])
def test_adaptive_avg_pool_cpp_backward_matches_finite_differences(rng, shape, output_size):
    x = random_array(rng, shape, np.float64)
    g = random_array(rng, F.adaptive_avg_pool2d_forward(x, output_size).shape, np.float64)
    dx = F.adaptive_avg_pool2d_backward(g, shape)
    assert_gradient(lambda: float(np.sum(F.adaptive_avg_pool2d_forward(x, output_size) * g)), x, dx)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 4, 7), (2, 17, 7, 7)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool(rng, shape, dtype):
    x = random_array(rng, shape, dtype)
    y = F.global_avg_pool2d_forward(x)
    hw = shape[2] * shape[3]
    assert y.shape == shape[:2] and y.dtype == dtype
    assert_sum_close(y, R.global_avg_pool2d_forward(x), R.global_avg_pool2d_forward(_abs64(x)), hw + 1)
    assert_sum_close(F.adaptive_avg_pool2d_forward(x, 1)[:, :, 0, 0], y, R.global_avg_pool2d_forward(_abs64(x)), hw + 1)
    g = random_array(rng, shape[:2], dtype)
    dx = F.global_avg_pool2d_backward(g, shape)
    assert_sum_close(dx, R.global_avg_pool2d_backward(g, shape), _abs64(g)[:, :, None, None] / hw, 2)
    np.testing.assert_array_equal(F.adaptive_avg_pool2d_backward(g[:, :, None, None], shape), dx)
    for offset in range(1, 8):  # the same bits wherever the planes lie (no alignment-dependent SIMD sums)
        moved = np.empty(x.size + offset, dtype)[offset:].reshape(shape)
        moved[...] = x
        np.testing.assert_array_equal(F.global_avg_pool2d_forward(moved), y)
    x64 = random_array(rng, shape, np.float64)
    g64 = random_array(rng, shape[:2], np.float64)
    assert_gradient(lambda: float(np.sum(F.global_avg_pool2d_forward(x64) * g64)), x64,
                    F.global_avg_pool2d_backward(g64, shape))


# --- threads, layouts ---------------------------------------------------------------------------

THREADED = [  # enough work for two threads (common.h kMinWorkPerThread)
    ("max-fast", lambda x: F.max_pool2d_forward(x, 2), lambda g, r, x: F.max_pool2d_backward(g, r[1], x.shape)),
    ("max", lambda x: F.max_pool2d_forward(x, 3, 2, 1, 2, True), lambda g, r, x: F.max_pool2d_backward(g, r[1], x.shape)),
    ("avg", lambda x: (F.avg_pool2d_forward(x, 3, 2, 1, True, False),),
     lambda g, r, x: F.avg_pool2d_backward(g, x.shape, 3, 2, 1, True, False)),
    ("adaptive", lambda x: (F.adaptive_avg_pool2d_forward(x, (5, 3)),),
     lambda g, r, x: F.adaptive_avg_pool2d_backward(g, x.shape)),
    ("global", lambda x: (F.global_avg_pool2d_forward(x),), lambda g, r, x: F.global_avg_pool2d_backward(g, x.shape)),
]


@pytest.mark.parametrize("name, fwd, bwd", THREADED, ids=[t[0] for t in THREADED])
@pytest.mark.parametrize("shape", [(4, 17, 28, 27), (4, 17, 28, 28)], ids=["odd", "even"])
def test_same_result_with_one_and_two_threads(rng, name, fwd, bwd, shape):
    x = random_array(rng, shape, np.float32)
    results = []
    for n in (1, 2):
        with num_threads(n):
            r = fwd(x)
            g = np.random.default_rng(5).uniform(-1, 1, r[0].shape).astype(np.float32)
            results.append([*r, bwd(g, r, x)])
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_layouts_are_copied_once(rng):
    x = random_array(rng, (2, 3, 9, 8), np.float64)
    xf = np.asfortranarray(x)
    y, indices = F.max_pool2d_forward(xf, 3, 2, 1)
    np.testing.assert_array_equal(y, R.max_pool2d_forward(x, 3, 2, 1)[0])
    g = random_array(rng, y.shape, np.float64)
    np.testing.assert_array_equal(F.max_pool2d_backward(np.asfortranarray(g), np.asfortranarray(indices), x.shape),
                                  R.max_pool2d_backward(g, indices, x.shape))
    np.testing.assert_array_equal(F.avg_pool2d_forward(xf[:, :, ::2], 2), F.avg_pool2d_forward(x[:, :, ::2].copy(), 2))


# --- bad arguments ------------------------------------------------------------------------------

X = np.zeros((1, 2, 4, 4))


@pytest.mark.parametrize("impl", [F, R], ids=["cpp", "reference"])
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.max_pool2d_forward(X, 3, padding=2, dilation=2),
         r"\[max_pool2d_forward\] padding should be at most half of kernel_size, got padding=\(2, 2\), kernel_size=\(3, 3\)"),
        (lambda m: m.avg_pool2d_forward(X, 3, padding=2), r"\[avg_pool2d_forward\] padding should be at most half"),
        (lambda m: m.max_pool2d_forward(X, 5), r"\[max_pool2d_forward\] input .*4, 4\) with kernel_size=\(5, 5\).* "
                                               r"gives output size \(0, 0\)"),
        (lambda m: m.max_pool2d_forward(X[0], 2), r"\[max_pool2d_forward\] x must be \(N, C, H, W\), got \(2, 4, 4\)"),
        (lambda m: m.max_pool2d_forward(X, 2, 0), r"\[max_pool2d_forward\] stride must be >= 1, got 0"),
        (lambda m: m.max_pool2d_forward(X, 2, 2, -1), r"\[max_pool2d_forward\] padding must be >= 0, got -1"),
        (lambda m: m.max_pool2d_backward(np.zeros((1, 2, 1, 1)), np.full((1, 2, 1, 1), 16), X.shape),
         r"\[max_pool2d_backward\] indices must be -1 or in \[0, H\*W\) = \[0, 16\)"),
        (lambda m: m.max_pool2d_backward(np.zeros((1, 2, 1, 1)), np.full((1, 2, 1, 1), -2), X.shape),
         r"\[max_pool2d_backward\] indices must be -1 or in \[0, H\*W\) = \[0, 16\)"),
        (lambda m: m.max_pool2d_backward(np.zeros((1, 3, 1, 1)), np.zeros((1, 3, 1, 1), np.int64), X.shape),
         r"\[max_pool2d_backward\] grad_out \(1, 3, 1, 1\) and indices"),
        (lambda m: m.max_pool2d_backward(np.zeros((1, 2, 1, 1)), np.zeros((1, 2, 1, 2), np.int64), X.shape),
         r"\[max_pool2d_backward\] grad_out \(1, 2, 1, 1\) and indices \(1, 2, 1, 2\)"),
        (lambda m: m.avg_pool2d_forward(X, 2, divisor_override=0),
         r"\[avg_pool2d_forward\] divisor_override must be a nonzero int or None, got 0"),
        (lambda m: m.avg_pool2d_forward(X, 2, divisor_override=True),
         r"\[avg_pool2d_forward\] divisor_override must be a nonzero int or None, got True"),
        (lambda m: m.avg_pool2d_backward(np.zeros((1, 2, 3, 3)), X.shape, 2),
         r"\[avg_pool2d_backward\] grad_out must be \(1, 2, 2, 2\), got \(1, 2, 3, 3\)"),
        (lambda m: m.adaptive_avg_pool2d_forward(X, (0, 2)), r"\[adaptive_avg_pool2d_forward\] output_size must be >= 1, got \(0, 2\)"),
        (lambda m: m.adaptive_avg_pool2d_forward(X, (1, 2, 3)), r"\[adaptive_avg_pool2d_forward\] output_size must be an int or a pair"),
        (lambda m: m.adaptive_avg_pool2d_backward(np.zeros((2, 2, 1, 1)), X.shape),
         r"\[adaptive_avg_pool2d_backward\] grad_out must be \(1, 2, 1, 1\), got \(2, 2, 1, 1\)"),
        (lambda m: m.global_avg_pool2d_backward(np.zeros(2), X.shape),
         r"\[global_avg_pool2d_backward\] grad_out must be \(1, 2\), got \(2,\)"),
    ],
)
def test_bad_arguments_as_the_reference(impl, call, match):
    with pytest.raises(ValueError, match=match):
        call(impl)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: F.max_pool2d_forward(X.astype(np.int64), 2), TypeError, r"\[max_pool2d_forward\] x must be float32 or float64, got int64"),
        (lambda: F.max_pool2d_forward(X.tolist(), 2), TypeError, r"\[max_pool2d_forward\] x must be a numpy.ndarray, got list"),
        (lambda: F.max_pool2d_forward(X, 2.0), TypeError, r"\[max_pool2d_forward\] kernel_size must be an int or a pair of ints, got 2.0"),
        (lambda: F.max_pool2d_forward(X, (2, 2, 2)), TypeError, r"\[max_pool2d_forward\] kernel_size must be an int or a pair"),
        (lambda: F.max_pool2d_forward(X, 2, ceil_mode=1), TypeError, r"\[max_pool2d_forward\] ceil_mode must be a bool, got int"),
        (lambda: F.max_pool2d_forward(np.zeros((0, 2, 4, 4)), 2), ValueError, r"\[max_pool2d_forward\] x is empty"),
        (lambda: F.max_pool2d_backward(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 2), np.int32), X.shape), TypeError,
         r"\[max_pool2d_backward\] indices must be int64, got int32"),
        (lambda: F.max_pool2d_backward(np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 2, 2), np.int64), (1, 2, 4)),
         ValueError, r"\[max_pool2d_backward\] input_shape must be \(N, C, H, W\) of positive ints, got \(1, 2, 4\)"),
        (lambda: F.avg_pool2d_forward(X, 2, count_include_pad=None), TypeError,
         r"\[avg_pool2d_forward\] count_include_pad must be a bool, got NoneType"),
        (lambda: F.avg_pool2d_backward(np.zeros((1, 2, 2, 2), np.int32), X.shape, 2), TypeError,
         r"\[avg_pool2d_backward\] grad_out must be float32 or float64, got int32"),
        (lambda: F.adaptive_avg_pool2d_forward(X, "1"), TypeError, r"\[adaptive_avg_pool2d_forward\] output_size must be an int or a pair of ints"),
        (lambda: F.adaptive_avg_pool2d_forward(X, 2**40), ValueError, r"\[adaptive_avg_pool2d_forward\] output size .* is too large"),
        (lambda: F.global_avg_pool2d_forward(X[0]), ValueError, r"\[global_avg_pool2d_forward\] x must be \(N, C, H, W\), got \(2, 4, 4\)"),
    ],
)
def test_bad_arguments_at_the_boundary(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
