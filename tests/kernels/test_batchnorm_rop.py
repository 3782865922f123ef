"""BatchNorm's R-operator kernels (functional.batchnorm_rop) against reference/batchnorm_rop.py:
train/eval, affine or not, rx or None, odd shapes and batch size 1, float32/float64 with
sum-scaled tolerances, threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, assert_sum_close, num_threads

SHAPES = [(2, 1), (7, 3), (33, 5), (1, 3, 7), (4, 7, 9), (1, 2, 5, 5), (3, 4, 3, 3)]


def _inputs(shape, dtype, affine, seed=0):
    rng = np.random.default_rng(seed)
    C = shape[1]
    arr = lambda *s: rng.standard_normal(s).astype(dtype)
    x, rx, g, rg = arr(*shape), arr(*shape), arr(*shape), arr(*shape)
    mean = arr(C)
    invstd = rng.uniform(0.5, 2, C).astype(dtype)
    w, vw, vb = (rng.uniform(0.5, 2, C).astype(dtype), arr(C), arr(C)) if affine else (None, None, None)
    return x, rx, g, rg, mean, invstd, w, vw, vb


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_reference(dtype, shape, training, affine):
    x, rx, g, rg, mean, invstd, w, vw, vb = _inputs(shape, dtype, affine)
    n = x.size // shape[1]
    ry, rm, rc = F.batch_norm_rop_forward(x, rx, mean, invstd, w, vw, vb, training)
    ry_r, rm_r, rc_r = R.batch_norm_rop_forward(x, rx, mean, invstd, w, vw, vb, training)
    # every output is a handful of products of per-channel sums of n terms of size ~ |x| |rx| s^2
    big = float(np.abs(x).max() * np.abs(rx).max() * invstd.max() ** 2 * (1 + np.abs(mean).max()) ** 2 + 1)
    scale = big * (1 + (np.abs(w).max() if affine else 1)) * 4
    assert ry.dtype == dtype and ry.shape == x.shape
    assert_sum_close(ry, ry_r.astype(dtype), np.full(x.shape, scale), n, dtype)
    assert_sum_close(rm, rm_r.astype(dtype), np.full(rm.shape, scale), n, dtype)
    assert_sum_close(rc, rc_r.astype(dtype), np.full(rc.shape, scale), n, dtype)
    out = F.batch_norm_rop_backward(g, rg, x, rx, mean, invstd, w, vw, rm, rc, training)
    ref = R.batch_norm_rop_backward(g, rg, x, rx, mean, invstd, w, vw, rm_r, rc_r, training)
    gscale = scale * float(np.abs(g).max() + np.abs(rg).max()) * 8
    for a, b in zip(out, ref):
        if b is None:
            assert a is None
            continue
        assert a.dtype == dtype
        assert_sum_close(a, b.astype(dtype), np.full(b.shape, gscale * (n if a.ndim == 1 else 1)), n, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rx_none_is_zero(dtype):
    x, rx, g, rg, mean, invstd, w, vw, vb = _inputs((5, 3), dtype, True)
    a = F.batch_norm_rop_forward(x, None, mean, invstd, w, vw, vb)
    b = F.batch_norm_rop_forward(x, np.zeros_like(x), mean, invstd, w, vw, vb)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    bb = F.batch_norm_rop_backward(g, rg, x, None, mean, invstd, w, vw, a[1], a[2])
    cc = F.batch_norm_rop_backward(g, rg, x, np.zeros_like(x), mean, invstd, w, vw, b[1], b[2])
    for u, v in zip(bb, cc):
        np.testing.assert_array_equal(u, v)


def test_same_bits_for_any_thread_count():
    x, rx, g, rg, mean, invstd, w, vw, vb = _inputs((64, 40, 3), np.float32, True)
    with num_threads(1):
        one = F.batch_norm_rop_forward(x, rx, mean, invstd, w, vw, vb)
        one_b = F.batch_norm_rop_backward(g, rg, x, rx, mean, invstd, w, vw, one[1], one[2])
    with num_threads(2):
        two = F.batch_norm_rop_forward(x, rx, mean, invstd, w, vw, vb)
        two_b = F.batch_norm_rop_backward(g, rg, x, rx, mean, invstd, w, vw, two[1], two[2])
    for u, v in zip(one + one_b, two + two_b):
        np.testing.assert_array_equal(u, v)


def test_bad_input():
    x, rx, g, rg, mean, invstd, w, vw, vb = _inputs((5, 3), np.float64, True)
    with pytest.raises(ValueError, match=r"\[batch_norm_rop_forward\] rx must have the shape of x"):
        F.batch_norm_rop_forward(x, rx[:2], mean, invstd, w, vw, vb)
    with pytest.raises(ValueError, match=r"mean must have shape \(3,\)"):
        F.batch_norm_rop_forward(x, rx, mean[:2], invstd, w, vw, vb)
    with pytest.raises(TypeError, match="float64"):
        F.batch_norm_rop_forward(x, rx.astype(np.float32), mean, invstd, w, vw, vb)
    with pytest.raises(ValueError, match=r"x must be \(N, C, \.\.\.\)"):
        F.batch_norm_rop_forward(x[0], None, mean, invstd)
    with pytest.raises(ValueError, match="g must have the shape of x"):
        F.batch_norm_rop_backward(g[:1], rg, x, rx, mean, invstd, w, vw, mean, mean)
