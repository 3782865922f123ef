"""Reference pooling: window-by-window loops and central finite differences (float64) as oracles
independent of torch, then torch.nn.functional's pools and their autograd (float32 and float64)."""

import itertools

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import DTYPES, assert_gradient, assert_sum_close, random_array, requires_torch

# (N, C, H, W), kernel_size, stride, padding, dilation, ceil_mode
CASES = [
    ((1, 1, 1, 1), 1, 1, 0, 1, False),
    ((3, 17, 8, 8), 2, None, 0, 1, False),  # the CNN's 2x2 pool, stride defaulting to the kernel
    ((2, 3, 7, 6), 3, 2, 1, 1, True),
    ((1, 2, 5, 4), 2, 2, 1, 1, True),  # ceil_mode: a 4th row window would start in the padding, dropped
    ((1, 3, 7, 7), 3, 2, 0, 1, True),  # ceil_mode: the last window runs past the input (no padding)
    ((1, 1, 2, 3), 3, 2, 1, 1, True),  # H, W < kernel, padding makes it fit
    ((1, 1, 5, 5), 2, 3, 1, 1, True),
    ((2, 1, 9, 5), 5, 3, 2, 1, False),
    ((1, 2, 4, 6), (1, 3), (1, 3), 0, 1, False),
    ((2, 2, 6, 7), (3, 2), (1, 2), (1, 0), (2, 1), False),  # dilation: max pool only
    ((1, 2, 9, 8), 3, 2, 1, 2, True),
]
AVG_CASES = [c for c in CASES if c[4] == 1]


def ids(cases):
    return [f"{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-{'ceil' if c[5] else 'floor'}".replace(" ", "") for c in cases]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def brute_windows(n, k, s, pad, d, ceil_mode):
    """[(taps, size)] per output of one axis from PyTorch's formulas: the in-bounds taps and the
    window's size counting the padding (clipped at the right padding), for avg_pool2d's divisor."""
    out = -(-(n + 2 * pad - d * (k - 1) - 1) // s) + 1 if ceil_mode else (n + 2 * pad - d * (k - 1) - 1) // s + 1
    if ceil_mode and (out - 1) * s >= n + pad:
        out -= 1
    windows = []
    for p in range(out):
        taps = [p * s - pad + i * d for i in range(k)]
        windows.append(([t for t in taps if 0 <= t < n], min(p * s - pad + k, n + pad) - (p * s - pad)))
    return windows


def brute_pool(x, kernel_size, stride, padding, dilation, ceil_mode, reduce):
    """reduce(window values (N, C, taps), window sizes) for every output window, in Python loops."""
    k, p, d = _pair(kernel_size), _pair(padding), _pair(dilation)
    s = k if stride is None else _pair(stride)
    rows = brute_windows(x.shape[2], k[0], s[0], p[0], d[0], ceil_mode)
    cols = brute_windows(x.shape[3], k[1], s[1], p[1], d[1], ceil_mode)
    out = np.zeros(x.shape[:2] + (len(rows), len(cols)))
    for (a, (hs, hsize)), (b, (ws, wsize)) in itertools.product(enumerate(rows), enumerate(cols)):
        flat = [h * x.shape[3] + w for h in hs for w in ws]
        out[:, :, a, b] = reduce(x.reshape(x.shape[:2] + (-1,))[:, :, flat], flat, (hsize * wsize, len(flat)))
    return out


def brute_max(x, *geometry):
    y = brute_pool(x, *geometry, lambda v, flat, sizes: v.max(axis=-1))
    idx = brute_pool(x, *geometry, lambda v, flat, sizes: np.asarray(flat)[v.argmax(axis=-1)])
    return y, idx.astype(np.int64)


def brute_avg(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    def mean(v, flat, sizes):
        divisor = divisor_override or (sizes[0] if count_include_pad else sizes[1])
        return v.sum(axis=-1) / divisor

    return brute_pool(x, kernel_size, stride, padding, 1, ceil_mode, mean)


def _abs64(a):
    return np.abs(np.asarray(a, np.float64))


def _taps(kernel_size):
    k = _pair(kernel_size)
    return k[0] * k[1]


# --- max_pool2d ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_max_pool_is_the_window_maximum(rng, case):
    shape, *geometry = case
    x = random_array(rng, shape, np.float64)
    y, indices = R.max_pool2d_forward(x, *geometry)
    ey, eidx = brute_max(x, *geometry)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(indices, eidx)
    assert indices.dtype == np.int64


@pytest.mark.parametrize("case", CASES[2:6] + CASES[9:], ids=ids(CASES[2:6] + CASES[9:]))
def test_max_pool_backward_matches_finite_differences(rng, case):
    shape, *geometry = case
    shape = (1, 1) + shape[2:]  # one plane per case keeps the 2 forwards per element cheap
    x = rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) / 7  # no ties within eps
    y, indices = R.max_pool2d_forward(x, *geometry)
    g = random_array(rng, y.shape, np.float64)
    dx = R.max_pool2d_backward(g, indices, shape)
    assert_gradient(lambda: float(np.sum(R.max_pool2d_forward(x, *geometry)[0] * g)), x, dx)


@requires_torch
@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_matches_torch(rng, case, dtype):
    import torch

    shape, k, s, p, d, ceil_mode = case
    x = random_array(rng, shape, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, k, s, p, d, ceil_mode, return_indices=True)
    y, indices = R.max_pool2d_forward(x, k, s, p, d, ceil_mode)
    np.testing.assert_array_equal(y, ty.detach().numpy())  # a selection: exact
    np.testing.assert_array_equal(indices, tidx.numpy())
    g = random_array(rng, y.shape, dtype)
    ty.backward(torch.tensor(g))
    dx = R.max_pool2d_backward(g, indices, shape)
    assert_sum_close(dx, tx.grad.numpy(), R.max_pool2d_backward(_abs64(g), indices, shape), _taps(k))


@requires_torch
def test_max_pool_nan_and_infinity_like_torch():
    import torch

    x = np.array([[[[1.0, np.nan, 3.0, np.nan], [-np.inf, -np.inf, 2.0, 0.0], [-np.inf, -np.inf, np.inf, 5.0]]]])
    for k, s, p in [(2, 1, 0), (2, 2, 1), (3, 1, 1)]:
        y, indices = R.max_pool2d_forward(x, k, s, p)
        ty, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())  # NaN propagates; an all -inf window is -inf
        np.testing.assert_array_equal(indices, tidx.numpy())


def test_max_pool_nan_propagates():
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, 1, 0] = np.nan
    y, indices = R.max_pool2d_forward(x, 2)
    assert np.isnan(y).all() and indices.ravel().tolist() == [2]


def test_max_pool_window_between_the_pixels():
    """Dilation 3 puts the taps of a 2-wide window at -1 and 2 of a 2-pixel axis: no tap is in bounds."""
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    y, indices = R.max_pool2d_forward(x, 2, 1, 1, 3)
    assert y.tolist() == [[[[-np.inf]]]] and indices.tolist() == [[[[-1]]]]
    np.testing.assert_array_equal(R.max_pool2d_backward(np.ones((1, 1, 1, 1)), indices, x.shape), np.zeros_like(x))
    x = np.arange(12.0).reshape(2, 3, 1, 2)  # rows have their tap, columns none: every window empty
    y, indices = R.max_pool2d_forward(x, (1, 2), 1, (0, 1), (1, 3))
    assert (y == -np.inf).all() and (indices == -1).all() and y.shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(R.max_pool2d_backward(np.ones(y.shape), indices, x.shape), np.zeros_like(x))


def test_max_pool_backward_adds_overlapping_windows():
    x = np.array([[[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]])
    _, indices = R.max_pool2d_forward(x, 2, 1)
    dx = R.max_pool2d_backward(np.array([[[[1.0, 2.0], [0.0, 0.0]]]]), indices, x.shape)
    assert dx[0, 0, 0, 1] == 3.0 and dx.sum() == 3.0


# --- avg_pool2d ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", AVG_CASES, ids=ids(AVG_CASES))
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor_override", [None, 3])
def test_avg_pool_is_the_window_mean(rng, case, count_include_pad, divisor_override):
    shape, k, s, p, _, ceil_mode = case
    x = random_array(rng, shape, np.float64)
    y = R.avg_pool2d_forward(x, k, s, p, ceil_mode, count_include_pad, divisor_override)
    expected = brute_avg(x, k, s, p, ceil_mode, count_include_pad, divisor_override)
    terms = R.avg_pool2d_forward(_abs64(x), k, s, p, ceil_mode, count_include_pad, divisor_override)
    assert_sum_close(y, expected, terms, _taps(k) + 1)


@pytest.mark.parametrize("case", AVG_CASES[2:7], ids=ids(AVG_CASES[2:7]))
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_backward_matches_finite_differences(rng, case, count_include_pad):
    shape, k, s, p, _, ceil_mode = case
    x = random_array(rng, shape, np.float64)
    args = (k, s, p, ceil_mode, count_include_pad)
    g = random_array(rng, R.avg_pool2d_forward(x, *args).shape, np.float64)
    dx = R.avg_pool2d_backward(g, shape, *args)
    assert_gradient(lambda: float(np.sum(R.avg_pool2d_forward(x, *args) * g)), x, dx)


@requires_torch
@pytest.mark.parametrize("case", AVG_CASES, ids=ids(AVG_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor_override", [None, 2])
def test_avg_pool_matches_torch(rng, case, dtype, count_include_pad, divisor_override):
    import torch

    shape, k, s, p, _, ceil_mode = case
    args = (k, s, p, ceil_mode, count_include_pad, divisor_override)
    x = random_array(rng, shape, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.avg_pool2d(tx, *args)
    y = R.avg_pool2d_forward(x, *args)
    assert_sum_close(y, ty.detach().numpy(), R.avg_pool2d_forward(_abs64(x), *args), _taps(k) + 1)
    g = random_array(rng, y.shape, dtype)
    ty.backward(torch.tensor(g))
    dx = R.avg_pool2d_backward(g, shape, *args)
    assert_sum_close(dx, tx.grad.numpy(), R.avg_pool2d_backward(_abs64(g), shape, *args), _taps(k) + 1)


# --- output size --------------------------------------------------------------------------------


def test_ceil_mode_drops_a_window_that_starts_in_the_padding():
    assert R.pool_output_size((5, 4), 2, 2, 1, ceil_mode=False) == (3, 3)
    assert R.pool_output_size((5, 4), 2, 2, 1, ceil_mode=True) == (3, 3)  # (5 + 2 - 2 + 1) // 2 + 1 = 4, less one
    assert R.pool_output_size((7, 6), 3, 2, 0, ceil_mode=True) == (3, 3)  # the last window runs past W


@requires_torch
def test_output_size_matches_torch():
    import torch

    for n, k, s, p, d, ceil_mode in itertools.product(range(1, 9), (1, 2, 3, 4), (1, 2, 3), (0, 1, 2), (1, 2), (False, True)):
        if p > k // 2 or n + 2 * p < d * (k - 1) + 1:
            continue
        x = torch.zeros(1, 1, n, 1)
        t = torch.nn.functional.max_pool2d(x, (k, 1), (s, 1), (p, 0), (d, 1), ceil_mode).shape[2]
        assert R.pool_output_size((n, 1), (k, 1), (s, 1), (p, 0), (d, 1), ceil_mode)[0] == t, (n, k, s, p, d, ceil_mode)


# --- adaptive and global average ----------------------------------------------------------------

ADAPTIVE_CASES = [
    ((1, 1, 1, 1), 1),
    ((2, 3, 7, 6), 3),  # uneven, overlapping windows
    ((1, 2, 5, 4), (2, 3)),
    ((1, 1, 3, 5), (4, 7)),  # larger than the input: windows repeat pixels
    ((2, 2, 6, 6), (None, 4)),
    ((3, 17, 8, 8), 1),
    ((1, 2, 28, 28), 7),
]


def brute_adaptive(x, output_size):
    sizes = output_size if isinstance(output_size, tuple) else (output_size, output_size)
    P, Q = (x.shape[2 + a] if o is None else o for a, o in enumerate(sizes))
    H, W = x.shape[2:]
    y = np.zeros(x.shape[:2] + (P, Q))
    for p, q in itertools.product(range(P), range(Q)):
        h0, h1 = (p * H) // P, -(-((p + 1) * H) // P)
        w0, w1 = (q * W) // Q, -(-((q + 1) * W) // Q)
        y[:, :, p, q] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


@pytest.mark.parametrize("shape, output_size", ADAPTIVE_CASES)
def test_adaptive_avg_pool_is_the_window_mean(rng, shape, output_size):
    x = random_array(rng, shape, np.float64)
    y = R.adaptive_avg_pool2d_forward(x, output_size)
    H, W = shape[2:]
    assert_sum_close(y, brute_adaptive(x, output_size), R.adaptive_avg_pool2d_forward(_abs64(x), output_size), H * W)


@pytest.mark.parametrize("shape, output_size", ADAPTIVE_CASES[:5])
def test_adaptive_avg_pool_backward_matches_finite_differences(rng, shape, output_size):
    x = random_array(rng, shape, np.float64)
    g = random_array(rng, R.adaptive_avg_pool2d_forward(x, output_size).shape, np.float64)
    dx = R.adaptive_avg_pool2d_backward(g, shape)
    assert_gradient(lambda: float(np.sum(R.adaptive_avg_pool2d_forward(x, output_size) * g)), x, dx)


@requires_torch
@pytest.mark.parametrize("shape, output_size", ADAPTIVE_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avg_pool_matches_torch(rng, shape, output_size, dtype):
    import torch

    x = random_array(rng, shape, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, output_size)
    y = R.adaptive_avg_pool2d_forward(x, output_size)
    k = shape[2] * shape[3]
    assert_sum_close(y, ty.detach().numpy(), R.adaptive_avg_pool2d_forward(_abs64(x), output_size), k)
    g = random_array(rng, y.shape, dtype)
    ty.backward(torch.tensor(g))
    dx = R.adaptive_avg_pool2d_backward(g, shape)
    assert_sum_close(dx, tx.grad.numpy(), R.adaptive_avg_pool2d_backward(_abs64(g), shape), y.shape[2] * y.shape[3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool(rng, dtype):
    shape = (3, 5, 4, 7)
    x = random_array(rng, shape, dtype)
    y = R.global_avg_pool2d_forward(x)
    assert y.shape == (3, 5) and y.dtype == dtype
    assert_sum_close(y, R.adaptive_avg_pool2d_forward(x, 1)[:, :, 0, 0], R.global_avg_pool2d_forward(_abs64(x)), 28)
    g = random_array(rng, (3, 5), dtype)
    dx = R.global_avg_pool2d_backward(g, shape)
    assert dx.dtype == dtype and dx.flags.writeable
    assert_sum_close(dx, R.adaptive_avg_pool2d_backward(g[:, :, None, None], shape), _abs64(g)[:, :, None, None] / 28, 2)


def test_global_avg_pool_backward_matches_finite_differences(rng):
    x = random_array(rng, (2, 3, 3, 2), np.float64)
    g = random_array(rng, (2, 3), np.float64)
    dx = R.global_avg_pool2d_backward(g, x.shape)
    assert_gradient(lambda: float(np.sum(R.global_avg_pool2d_forward(x) * g)), x, dx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_is_kept(rng, dtype):
    x = random_array(rng, (2, 3, 5, 5), dtype)
    y, indices = R.max_pool2d_forward(x, 2)
    assert y.dtype == dtype and R.max_pool2d_backward(y, indices, x.shape).dtype == dtype
    y = R.avg_pool2d_forward(x, 3, 2, 1, True, False)
    assert y.dtype == dtype and R.avg_pool2d_backward(y, x.shape, 3, 2, 1, True, False).dtype == dtype
    y = R.adaptive_avg_pool2d_forward(x, 3)
    assert y.dtype == dtype and R.adaptive_avg_pool2d_backward(y, x.shape).dtype == dtype


def test_bad_arguments():
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"\[max_pool2d_forward\] padding should be at most half of kernel_size, "
                                         r"got padding=\(2, 2\), kernel_size=\(3, 3\)"):
        R.max_pool2d_forward(x, 3, padding=2, dilation=2)  # dilation does not widen the limit
    with pytest.raises(ValueError, match=r"\[avg_pool2d_forward\] padding should be at most half"):
        R.avg_pool2d_forward(x, 3, padding=2)
    with pytest.raises(ValueError, match=r"\[max_pool2d_forward\] input \(4, 4\) with kernel_size=\(5, 5\).* gives output size \(0, 0\)"):
        R.max_pool2d_forward(x, 5)
    with pytest.raises(ValueError, match=r"\[max_pool2d_forward\] x must be \(N, C, H, W\), got \(2, 4, 4\)"):
        R.max_pool2d_forward(x[0], 2)
    with pytest.raises(ValueError, match=r"\[max_pool2d_forward\] stride must be >= 1, got 0"):
        R.max_pool2d_forward(x, 2, 0)
    with pytest.raises(ValueError, match=r"\[max_pool2d_backward\] indices must be -1 or in \[0, H\*W\) = \[0, 16\)"):
        R.max_pool2d_backward(np.zeros((1, 2, 1, 1)), np.full((1, 2, 1, 1), 16), x.shape)
    with pytest.raises(ValueError, match=r"\[max_pool2d_backward\] grad_out \(1, 3, 1, 1\) and indices"):
        R.max_pool2d_backward(np.zeros((1, 3, 1, 1)), np.zeros((1, 3, 1, 1), np.int64), x.shape)
    with pytest.raises(ValueError, match=r"\[avg_pool2d_forward\] divisor_override must be a nonzero int or None, got 0"):
        R.avg_pool2d_forward(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match=r"\[avg_pool2d_backward\] grad_out must be \(1, 2, 2, 2\), got \(1, 2, 3, 3\)"):
        R.avg_pool2d_backward(np.zeros((1, 2, 3, 3)), x.shape, 2)
    with pytest.raises(ValueError, match=r"\[adaptive_avg_pool2d_forward\] output_size must be >= 1, got \(0, 2\)"):
        R.adaptive_avg_pool2d_forward(x, (0, 2))
    with pytest.raises(ValueError, match=r"\[global_avg_pool2d_backward\] grad_out must be \(1, 2\), got \(2,\)"):
        R.global_avg_pool2d_backward(np.zeros(2), x.shape)
