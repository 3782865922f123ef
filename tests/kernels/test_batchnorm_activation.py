"""Fused batch norm + ReLU (+ dropout) kernels: bit-identical to the separate C++ kernels, close to
the NumPy reference, finite differences on the C++ backward, layouts, threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from fastnn.reference.batchnorm_activation import KEPT, RELU_PASS
from tests.conftest import DTYPES, assert_close, assert_gradient, assert_sum_close, layouts, num_threads, random_array
from tests.reference.test_batchnorm import backward_terms, forward_terms

# (N, C), (N, C, L), (N, C, H, W): C = 1, 7, 33, 129, batch size 1 where training allows it, a
# channel split over column tiles (S = 33*33 > 512) and several channel groups (C = 1100).
SHAPES = [
    (2, 1), (7, 7), (31, 33), (5, 129), (3, 1100),
    (1, 3, 7), (4, 7, 129), (1, 1, 7, 7), (2, 3, 33, 33), (5, 32, 4, 4),
]
PS = [0.0, 0.5]


def _params(rng, C, dtype):
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    b = rng.uniform(-1.0, 1.0, C).astype(dtype)
    rm = rng.uniform(-1.0, 1.0, C).astype(dtype)
    rv = rng.uniform(0.5, 2.0, C).astype(dtype)
    return w, b, rm, rv


def _separate(x, g, w, b, rm, rv, training, p, seed, step):
    """The same op from the separate C++ kernels: batch norm, ReLU, dropout and back."""
    z, mean, invstd = F.batch_norm_forward(x, w, b, rm, rv, training)
    r = F.relu_forward(z)
    y, keep = F.dropout_forward(r, p, seed, step, training)
    mask = np.where(z > 0, RELU_PASS, 0).astype(np.uint8) | np.where(keep, KEPT, 0).astype(np.uint8)
    g_r = F.dropout_backward(g, keep, p if training else 0.0)
    grads = F.batch_norm_backward(F.relu_backward(g_r, r), x, w, mean, invstd, training)
    return (y, mean, invstd, mask), grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("p", PS)
def test_bit_identical_to_the_separate_kernels(rng, dtype, shape, training, p):
    x, g = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    w, b, rm, rv = _params(rng, shape[1], dtype)
    rm_s, rv_s = rm.copy(), rv.copy()
    fwd = F.batch_norm_relu_forward(x, w, b, rm, rv, training, p=p, seed=3, step=11)
    grads = F.batch_norm_relu_backward(g, x, w, fwd[1], fwd[2], fwd[3], training, p)
    fwd_s, grads_s = _separate(x, g, w, b, rm_s, rv_s, training, p, 3, 11)
    for name, a, e in zip(["y", "save_mean", "save_invstd", "mask", "dx", "dweight", "dbias", "running_mean",
                           "running_var"], [*fwd, *grads, rm, rv], [*fwd_s, *grads_s, rm_s, rv_s]):
        assert a.dtype == e.dtype, name
        np.testing.assert_array_equal(a, e, err_msg=name)
    assert fwd[3].dtype == np.uint8


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("p", PS)
def test_match_reference(rng, dtype, shape, training, p):
    x, g = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    w, b, rm, rv = _params(rng, shape[1], dtype)
    rm_r, rv_r = rm.copy(), rv.copy()
    y, mean, invstd, mask = F.batch_norm_relu_forward(x, w, b, rm, rv, training, p=p, seed=5, step=2)
    y_r, mean_r, invstd_r, mask_r = R.batch_norm_relu_forward(x, w, b, rm_r, rv_r, training, p=p, seed=5, step=2)
    np.testing.assert_array_equal(mask & KEPT, mask_r & KEPT)  # the same dropout draws
    z_r = R.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training)[0]
    flipped = (mask & RELU_PASS) != (mask_r & RELU_PASS)  # only where z is 0 up to rounding
    assert np.all(np.abs(z_r[flipped]) < 1e-5)
    # ReLU (slope <= 1) and dropout's 1 / (1 - p) scale the batch norm's terms, at most
    keep_scale = np.where((mask_r & KEPT) != 0, 1 / (1 - p) if training else 1.0, 0.0)
    if training:
        terms, n = forward_terms(x, w, b, 0.1, rm_r)
        assert_sum_close(y, y_r, terms["y"] * keep_scale, n, dtype)
        assert_sum_close(mean, mean_r, terms["mean"], n, dtype)
        assert_sum_close(invstd, invstd_r, invstd_r, n, dtype)  # a sum of squares
        assert_sum_close(rm, rm_r, terms["running_mean"], n + 2, dtype)
        assert_sum_close(rv, rv_r, rv_r, n + 2, dtype)
    else:  # the folded affine scale x + shift
        scale = np.abs(w / np.sqrt(rv.astype(np.float64) + 1e-5))
        per_c = (1, -1) + (1,) * (x.ndim - 2)
        t = scale.reshape(per_c) * np.abs(x) + (np.abs(b) + np.abs(rm) * scale).reshape(per_c)
        assert_sum_close(y, y_r, t * keep_scale, 3, dtype)
        assert_close(mean, mean_r, dtype)
        assert_close(invstd, invstd_r, dtype)
        np.testing.assert_array_equal(rm, rm_r)
        np.testing.assert_array_equal(rv, rv_r)
    dx, dw, db = F.batch_norm_relu_backward(g, x, w, mean, invstd, mask, training, p)
    dx_r, dw_r, db_r = R.batch_norm_relu_backward(g, x, w, mean, invstd, mask, training, p)
    # the gradient reaching the batch norm is g where ReLU passed and dropout kept (times 1 / (1 - p))
    g_bn = g * keep_scale * ((mask_r & RELU_PASS) != 0)
    terms, n = backward_terms(g_bn, x, w, mean, invstd, training)
    for name, got, want, t in zip(["dx", "dw", "db"], (dx, dw, db), (dx_r, dw_r, db_r), terms):
        assert_sum_close(got, want, t, n if (training or name != "dx") else 1, dtype, err_msg=name)


def test_dropout_mask_and_scaling(rng):
    x = random_array(rng, (256, 64), np.float32)
    y, _, _, mask = F.batch_norm_relu_forward(x, None, None, None, None, True, p=0.25, seed=1, step=4)
    kept = (mask & KEPT) != 0
    assert 0.72 < kept.mean() < 0.78
    z = F.batch_norm_forward(x, None, None, None, None, True)[0]
    assert_close(y, np.where(kept, np.maximum(z, 0) / 0.75, 0).astype(np.float32))
    np.testing.assert_array_equal((mask & RELU_PASS) != 0, z > 0)
    other = F.batch_norm_relu_forward(x, None, None, None, None, True, p=0.25, seed=1, step=5)[3]
    assert not np.array_equal(other & KEPT, mask & KEPT)  # a new step draws a new mask
    for training, p in ((True, 0.0), (False, 0.9)):  # no dropout: every element kept, no scaling
        y, _, _, mask = F.batch_norm_relu_forward(x, None, None, np.zeros(64, np.float32), np.ones(64, np.float32),
                                                  training, p=p, seed=1, step=4)
        assert np.all(mask & KEPT) and np.all(y >= 0)


def test_non_finite_values_propagate_as_in_the_separate_kernels(rng):
    x = random_array(rng, (16, 9), np.float64)
    x[3, 2] = np.nan  # channel 2 becomes NaN
    g = random_array(rng, (16, 9), np.float64)
    g[5, 4] = np.inf  # a dropped inf gives NaN in the separate kernels (inf * 0)
    w, b, rm, rv = _params(rng, 9, np.float64)
    for training in (True, False):
        fwd = F.batch_norm_relu_forward(x, w, b, rm.copy(), rv.copy(), training, p=0.5, seed=2, step=3)
        grads = F.batch_norm_relu_backward(g, x, w, fwd[1], fwd[2], fwd[3], training, 0.5)
        fwd_s, grads_s = _separate(x, g, w, b, rm.copy(), rv.copy(), training, 0.5, 2, 3)
        for a, e in zip([*fwd, *grads], [*fwd_s, *grads_s]):
            np.testing.assert_array_equal(a, e)  # NaN where NaN


@pytest.mark.parametrize("layout", ["F", "strided"])
@pytest.mark.parametrize("shape", [(9, 33), (4, 7, 5)])
def test_non_contiguous_inputs(rng, layout, shape):
    dtype = np.float64
    x, g = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    w, b, rm, rv = _params(rng, shape[1], dtype)
    y, mean, invstd, mask = F.batch_norm_relu_forward(x, w, b, rm.copy(), rv.copy(), True, p=0.5, seed=7, step=1)
    want = F.batch_norm_relu_backward(g, x, w, mean, invstd, mask, True, 0.5)
    lx, lg, lw, lm = layouts(x)[layout], layouts(g)[layout], layouts(np.tile(w, (1, 1)))[layout][0], layouts(mask)[layout]
    got_fwd = F.batch_norm_relu_forward(lx, lw, b, rm.copy(), rv.copy(), True, p=0.5, seed=7, step=1)
    for a, e in zip(got_fwd, (y, mean, invstd, mask)):
        np.testing.assert_array_equal(a, e)
    for a, e in zip(F.batch_norm_relu_backward(lg, lx, lw, mean, invstd, lm, True, 0.5), want):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 3), (2, 3, 2, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_cpp_backward_matches_finite_differences(rng, shape, training):
    """loss = sum(u * y) with a random u; the dropout mask is fixed by (seed, step)."""
    x = rng.standard_normal(shape)
    u = rng.standard_normal(shape)
    w, b, rm, rv = _params(rng, shape[1], np.float64)

    def loss():
        stats = (None, None) if training else (rm, rv)
        return float(np.sum(u * F.batch_norm_relu_forward(x, w, b, *stats, training, p=0.3, seed=4, step=8)[0]))

    stats = (None, None) if training else (rm, rv)
    _, mean, invstd, mask = F.batch_norm_relu_forward(x, w, b, *stats, training, p=0.3, seed=4, step=8)
    if training:  # both dropout outcomes occur
        assert np.any(mask == RELU_PASS) and np.any(mask == RELU_PASS | KEPT)
    else:  # no dropout in eval
        assert np.all(mask & KEPT) and np.any(mask == RELU_PASS | KEPT)
    dx, dw, db = F.batch_norm_relu_backward(u, x, w, mean, invstd, mask, training, 0.3)
    assert_gradient(loss, x, dx, rtol=1e-5, atol=1e-7)
    assert_gradient(loss, w, dw, rtol=1e-5, atol=1e-7)
    assert_gradient(loss, b, db, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", [(256, 1024), (16, 64, 16, 16)])
@pytest.mark.parametrize("p", PS)
def test_same_result_with_one_and_two_threads(rng, shape, p):
    dtype = np.float32
    x, g = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    w, b, rm, rv = _params(rng, shape[1], dtype)
    results = []
    for n in (1, 2):
        with num_threads(n):
            rm_n, rv_n = rm.copy(), rv.copy()
            fwd = F.batch_norm_relu_forward(x, w, b, rm_n, rv_n, True, p=p, seed=9, step=9)
            grads = F.batch_norm_relu_backward(g, x, w, fwd[1], fwd[2], fwd[3], True, p)
            eval_fwd = F.batch_norm_relu_forward(x, w, b, rm_n, rv_n, False)
            results.append((*fwd, *grads, rm_n, rv_n, *eval_fwd))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_one_value_per_channel_in_training_is_an_error():
    with pytest.raises(ValueError, match=r"\[batch_norm_relu_forward\] Expected more than 1 value per channel when training"):
        F.batch_norm_relu_forward(np.ones((1, 4), np.float32), None, None, None, None, True, p=0.5)
    y = F.batch_norm_relu_forward(np.ones((1, 4)), None, None, np.zeros(4), np.ones(4), False)[0]  # eval is fine
    assert_close(y, np.full((1, 4), 1 / np.sqrt(1 + 1e-5)))


X32 = np.ones((4, 3), np.float32)
V32 = np.ones(3, np.float32)
M8 = np.full((4, 3), 3, np.uint8)


def _fwd(**kw):
    args = dict(x=X32, weight=V32, bias=V32, running_mean=V32.copy(), running_var=V32.copy(), training=True, p=0.5)
    args.update(kw)
    return F.batch_norm_relu_forward(**args)


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        (dict(x=np.ones(3, np.float32)), ValueError, r"\[batch_norm_relu_forward\] x must be \(N, C\), \(N, C, L\) or \(N, C, H, W\), got shape \(3,\)"),
        (dict(x=np.ones((0, 3), np.float32)), ValueError, r"\[batch_norm_relu_forward\] x is empty"),
        (dict(x=np.ones((4, 3), np.int32)), TypeError, r"x must be float32 or float64, got int32"),
        (dict(x=[[1.0, 2.0]]), TypeError, r"\[batch_norm_relu_forward\] x must be a numpy.ndarray, got list"),
        (dict(weight=np.ones(4, np.float32)), ValueError, r"weight must have shape \(3,\), got \(4,\)"),
        (dict(bias=np.ones(3)), TypeError, r"bias must be float32 like the other inputs, got float64"),
        (dict(running_var=None), ValueError, r"running_mean and running_var must both be arrays or both be None"),
        (dict(running_mean=None, running_var=None, training=False), ValueError, r"training=False needs running_mean"),
        (dict(momentum=1.5), ValueError, r"momentum must be in \[0, 1\], got 1.5"),
        (dict(eps=0.0), ValueError, r"\[batch_norm_relu_forward\] eps must be > 0"),
        (dict(p=1.0), ValueError, r"\[batch_norm_relu_forward\] p must be in \[0, 1\), got 1.0"),
        (dict(p=-0.1), ValueError, r"p must be in \[0, 1\)"),
        (dict(p=float("nan")), ValueError, r"p must be finite, got nan"),
        (dict(p="0.5"), TypeError, r"p must be a real number, got str"),
        (dict(seed=-1), ValueError, r"seed must be a non-negative integer < 2\*\*64, got -1"),
        (dict(step=2**64), ValueError, r"step must be a non-negative integer < 2\*\*64"),
        (dict(step=1.5), TypeError, r"step must be an integer, got float"),
    ],
)
def test_forward_bad_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        _fwd(**kw)


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((np.ones((4, 2), np.float32), X32, V32, V32, V32, M8), ValueError, r"\[batch_norm_relu_backward\] grad_out must have shape \(4, 3\), got \(4, 2\)"),
        ((X32.astype(np.float64), X32, V32, V32, V32, M8), TypeError, r"grad_out must be float32 like the other inputs"),
        ((X32, X32, V32, np.ones(2, np.float32), V32, M8), ValueError, r"save_mean must have shape \(3,\), got \(2,\)"),
        ((X32, X32, V32, V32, V32, M8.astype(bool)), TypeError, r"\[batch_norm_relu_backward\] mask must be uint8, got bool"),
        ((X32, X32, V32, V32, V32, M8[:2]), ValueError, r"mask must have shape \(4, 3\), got \(2, 3\)"),
        ((X32, X32, V32, V32, V32, None), TypeError, r"mask must be a numpy.ndarray, got NoneType"),
        ((X32, np.ones((0, 3), np.float32), V32, V32, V32, M8), ValueError, r"\[batch_norm_relu_backward\] x is empty"),
        ((X32, X32, V32, V32, V32, M8, True, 1.5), ValueError, r"\[batch_norm_relu_backward\] p must be in \[0, 1\)"),
    ],
)
def test_backward_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        F.batch_norm_relu_backward(*args)


# --- batch norm + ReLU + MaxPool2d(2) in training (batch_norm_relu_max_pool2d_forward) ----------------
# the CNN's maps, odd heights (the last row is not pooled), channels 1/3/17 with tiles that split
# planes (S = 784 > 512 columns), batch 1, NaN-free random data and ties (a constant channel)
POOL_SHAPES = [(128, 3, 28, 28), (1, 1, 2, 2), (3, 17, 7, 6), (2, 5, 14, 14), (4, 3, 9, 10), (1, 2, 3, 1024)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_max_pool_bit_identical_to_the_separate_kernels(rng, dtype, shape):
    x = random_array(rng, shape, dtype)
    x[:, 0, :2, :2] = 0.25  # ties in one window of each image
    w, b, rm, rv = _params(rng, shape[1], dtype)
    rm_s, rv_s = rm.copy(), rv.copy()
    y, idx, mean, invstd = F.batch_norm_relu_max_pool2d_forward(x, w, b, rm, rv)
    z, mean_s, invstd_s, _ = F.batch_norm_relu_forward(x, w, b, rm_s, rv_s, True)
    y_s, idx_s = F.max_pool2d_forward(z, 2)
    for name, a, e in zip(["y", "indices", "save_mean", "save_invstd", "running_mean", "running_var"],
                          [y, idx, mean, invstd, rm, rv], [y_s, idx_s, mean_s, invstd_s, rm_s, rv_s]):
        assert a.dtype == e.dtype and a.shape == e.shape, name
        np.testing.assert_array_equal(a, e, err_msg=name)


def test_max_pool_non_finite_values_as_the_separate_kernels(rng):
    x = random_array(rng, (3, 4, 6, 8), np.float32)
    x[1, 0, 2, 3] = np.nan  # channel 0: NaN statistics
    x[0, 2, 0, 0] = np.inf  # channel 2: an infinite mean
    w, b, _, _ = _params(rng, 4, np.float32)
    y, idx, mean, invstd = F.batch_norm_relu_max_pool2d_forward(x, w, b, None, None)
    z, mean_s, invstd_s, _ = F.batch_norm_relu_forward(x, w, b, None, None, True)
    y_s, idx_s = F.max_pool2d_forward(z, 2)
    assert np.isnan(y[:, 0]).all() and np.isfinite(y[:, 1]).all()
    for a, e in zip([y, idx, mean, invstd], [y_s, idx_s, mean_s, invstd_s]):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", POOL_SHAPES[1:])
def test_max_pool_matches_reference(rng, dtype, shape):
    x = random_array(rng, shape, dtype)
    w, b, rm, rv = _params(rng, shape[1], dtype)
    rm_r, rv_r = rm.copy(), rv.copy()
    y, idx, mean, invstd = F.batch_norm_relu_max_pool2d_forward(x, w, b, rm, rv, momentum=0.3)
    y_r, idx_r, mean_r, invstd_r = R.batch_norm_relu_max_pool2d_forward(x, w, b, rm_r, rv_r, momentum=0.3)
    terms, n = forward_terms(x, w, b, 0.3, rm_r)
    assert_sum_close(mean, mean_r, terms["mean"], n, dtype)
    assert_sum_close(invstd, invstd_r, invstd_r, n, dtype)
    assert_sum_close(rm, rm_r, terms["running_mean"], n + 2, dtype)
    # the maxima: where both pick the same tap, the values agree as BN's; elsewhere two taps within rounding
    same = idx == idx_r
    assert same.mean() > 0.99
    t_pool = R.max_pool2d_forward(terms["y"], 2)[0]
    assert_sum_close(y, y_r, t_pool, n, dtype)


def test_max_pool_backward_through_the_separate_kernels_matches_finite_differences(rng):
    """loss = sum(u * y): the gradient is max_pool2d_backward, then batch_norm_relu_backward."""
    shape = (3, 2, 4, 6)
    x = rng.standard_normal(shape)
    u = rng.standard_normal((3, 2, 2, 3))
    w, b, _, _ = _params(rng, 2, np.float64)

    def loss():
        return float(np.sum(u * F.batch_norm_relu_max_pool2d_forward(x, w, b, None, None)[0]))

    _, idx, mean, invstd = F.batch_norm_relu_max_pool2d_forward(x, w, b, None, None)
    g_z = F.max_pool2d_backward(u, idx, shape)
    z = F.batch_norm_forward(x, w, b, None, None, True)[0]
    mask = np.where(z > 0, RELU_PASS | KEPT, KEPT).astype(np.uint8)
    dx, dw, db = F.batch_norm_relu_backward(g_z, x, w, mean, invstd, mask, True)
    assert_gradient(loss, x, dx, rtol=1e-5, atol=1e-7)
    assert_gradient(loss, w, dw, rtol=1e-5, atol=1e-7)
    assert_gradient(loss, b, db, rtol=1e-5, atol=1e-7)


def test_max_pool_same_result_with_one_two_and_three_threads(rng):
    x = random_array(rng, (16, 32, 28, 28), np.float32)
    w, b, rm, rv = _params(rng, 32, np.float32)
    results = []
    for n in (1, 2, 3):
        with num_threads(n):
            results.append(F.batch_norm_relu_max_pool2d_forward(x, w, b, rm.copy(), rv.copy()))
    for one, *others in zip(*results):
        for other in others:
            np.testing.assert_array_equal(one, other)


@pytest.mark.parametrize("impl", [F, R], ids=["cpp", "reference"])
@pytest.mark.parametrize("shape,match", [
    ((2, 3, 4, 5), r"needs H >= 2 and an even W <= 1024 \(2x2 windows tiling the rows\), got x \(2, 3, 4, 5\)"),
    ((2, 3, 1, 4), r"needs H >= 2 and an even W <= 1024"),
    ((2, 3, 2, 1026), r"needs H >= 2 and an even W <= 1024"),
    ((2, 3, 4), r"x must be \(N, C, H, W\), got \(2, 3, 4\)"),
])
def test_max_pool_bad_input(impl, shape, match):
    with pytest.raises(ValueError, match=r"\[batch_norm_relu_max_pool2d_forward\] " + match):
        impl.batch_norm_relu_max_pool2d_forward(np.ones(shape), None, None, None, None)
