"""Batch normalization kernels: C++ vs reference (train/eval, fwd/bwd, fold, affine), layouts,
finite differences on the C++ backward, running statistics, threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, assert_close, assert_gradient, assert_sum_close, num_threads, random_array, requires_torch
from tests.reference.test_batchnorm import backward_terms, forward_terms

# (N, C), (N, C, L), (N, C, H, W) around SIMD widths, with batch size 1 where training allows it
# (n = N*H*W > 1), channels wider than one column tile (S = 33*33 > 512), column tiles that split
# a channel (7 channels of 129 values) and several channel groups (C = 1100; 40 channels of 3600 B).
SHAPES = [
    (2, 1), (7, 7), (31, 33), (33, 32), (129, 7), (4, 129), (3, 1100),
    (1, 3, 7), (7, 31, 1), (4, 7, 129), (32, 5, 33), (4, 40, 900),
    (1, 1, 7, 7), (2, 3, 33, 33), (5, 32, 4, 4), (3, 7, 1, 1),
]


def _params(rng, C, dtype, affine=True):
    w = rng.uniform(0.5, 2.0, C).astype(dtype) if affine else None
    b = rng.uniform(-1.0, 1.0, C).astype(dtype) if affine else None
    rm = rng.uniform(-1.0, 1.0, C).astype(dtype)
    rv = rng.uniform(0.5, 2.0, C).astype(dtype)
    return w, b, rm, rv


def _check_forward_train(x, w, b, rm, rv, dtype, momentum=0.1, eps=1e-5):
    rm_ref, rv_ref = (None, None) if rm is None else (rm.copy(), rv.copy())
    terms, n = forward_terms(x, w, b, momentum, rm)
    y, mean, invstd = F.batch_norm_forward(x, w, b, rm, rv, True, momentum, eps)
    y_r, mean_r, invstd_r = R.batch_norm_forward(np.ascontiguousarray(x), w, b, rm_ref, rv_ref, True, momentum, eps)
    assert_sum_close(y, y_r, terms["y"], n, dtype)
    assert_sum_close(mean, mean_r, terms["mean"], n, dtype)
    assert_sum_close(invstd, invstd_r, invstd_r, n, dtype)
    if rm is not None:
        assert_sum_close(rm, rm_ref, terms["running_mean"], n + 2, dtype)
        assert_sum_close(rv, rv_ref, rv_ref, n + 2, dtype)
    return y, mean, invstd


def _affine_terms(x, scale, shift_terms):
    """scale x + shift per channel: its terms and count."""
    z = np.abs(np.asarray(x, np.float64)).reshape(x.shape[0], x.shape[1], -1)
    t = np.abs(np.asarray(scale, np.float64))[None, :, None] * z + np.abs(np.asarray(shift_terms, np.float64))[None, :, None]
    return t.reshape(x.shape), 2


def _check_backward(g, x, w, mean, invstd, training, dtype):
    dx, dw, db = F.batch_norm_backward(g, x, w, mean, invstd, training)
    want = R.batch_norm_backward(g, x, w, mean, invstd, training)
    terms, n = backward_terms(g, x, w, mean, invstd, training)
    for name, got, r, t in zip(["dx", "dw", "db"], (dx, dw, db), want, terms):
        assert_sum_close(got, r, t, n if (training or name != "dx") else 1, dtype, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_train_match_reference(rng, dtype, shape):
    C = shape[1]
    x = random_array(rng, shape, dtype) + dtype(0.5)
    w, b, rm, rv = _params(rng, C, dtype)
    _, mean, invstd = _check_forward_train(x, w, b, rm, rv, dtype)
    g = random_array(rng, shape, dtype)  # random: an all-ones gradient makes dx exactly 0
    # dx = gamma invstd / n (n g - dbeta - x_hat dgamma) cancels (most when n is 2 or 3)
    _check_backward(g, x, w, mean, invstd, True, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 7), (1, 33), (4, 7, 129), (1, 1, 7, 7), (2, 3, 33, 33)])
def test_forward_backward_eval_match_reference(rng, dtype, shape):
    C = shape[1]
    x = random_array(rng, shape, dtype)
    w, b, rm, rv = _params(rng, C, dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = F.batch_norm_forward(x, w, b, rm, rv, False)
    y_r, mean_r, invstd_r = R.batch_norm_forward(x, w, b, rm, rv, False)
    scale_r, _ = R.batch_norm_fold(w, b, rm, rv)
    assert_sum_close(y, y_r, *_affine_terms(x, scale_r, np.abs(b) + np.abs(rm * scale_r)), dtype)
    assert_close(mean, mean_r, dtype)
    assert_close(invstd, invstd_r, dtype)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    # eval is exactly the folded affine kernel
    scale, shift = F.batch_norm_fold(w, b, rm, rv)
    np.testing.assert_array_equal(y, F.batch_norm_affine(x, scale, shift))
    g = random_array(rng, shape, dtype)
    _check_backward(g, x, w, mean, invstd, False, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 9), (2, 3, 5, 5)])
def test_weight_none_is_gamma_one_beta_zero(rng, dtype, shape):
    C = shape[1]
    x = random_array(rng, shape, dtype)
    ones, zeros = np.ones(C, dtype), np.zeros(C, dtype)
    _, _, rm, rv = _params(rng, C, dtype)
    for training in (True, False):
        y, mean, invstd = F.batch_norm_forward(x, None, None, rm.copy(), rv.copy(), training)
        y1, _, _ = F.batch_norm_forward(x, ones, zeros, rm.copy(), rv.copy(), training)
        if training:
            terms, n = forward_terms(x, None, None)
            terms = terms["y"]
        else:
            terms, n = _affine_terms(x, 1 / np.sqrt(rv + 1e-5), rm / np.sqrt(rv + 1e-5))
        assert_sum_close(y, y1, terms, n, dtype)
        assert_sum_close(y, R.batch_norm_forward(x, None, None, rm.copy(), rv.copy(), training)[0], terms, n, dtype)
        g = random_array(rng, shape, dtype)
        grads = F.batch_norm_backward(g, x, None, mean, invstd, training)
        terms, n = backward_terms(g, x, None, mean, invstd, training)
        for got, want, t in zip(grads, F.batch_norm_backward(g, x, ones, mean, invstd, training), terms):
            assert_sum_close(got, want, t, n, dtype)
        assert grads[1].shape == grads[2].shape == (C,)
    assert_close(F.batch_norm_fold(None, None, rm, rv)[0], 1 / np.sqrt(rv + dtype(1e-5)), dtype)
    assert_close(F.batch_norm_fold(None, None, rm, rv)[1], -rm / np.sqrt(rv + dtype(1e-5)), dtype)  # products


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 33), (4, 7, 129), (3, 5, 6, 7)])
def test_fold_and_affine_match_reference(rng, dtype, shape):
    C = shape[1]
    w, b, rm, rv = _params(rng, C, dtype)
    scale, shift = F.batch_norm_fold(w, b, rm, rv, eps=1e-3)
    scale_r, shift_r = R.batch_norm_fold(w, b, rm, rv, eps=1e-3)
    assert_close(scale, scale_r, dtype)  # a quotient: no sum
    assert_sum_close(shift, shift_r, np.abs(b) + np.abs(rm * scale_r), 2, dtype)  # beta - mean scale
    x = random_array(rng, shape, dtype)
    assert_sum_close(F.batch_norm_affine(x, scale, shift), R.batch_norm_affine(x, scale, shift), *_affine_terms(x, scale, shift), dtype)


@pytest.mark.parametrize("layout", ["F", "strided", "transposed"])
@pytest.mark.parametrize("shape", [(9, 33), (6, 5, 7, 3)])
def test_non_contiguous_inputs(rng, layout, shape):
    dtype = np.float64
    base = random_array(rng, shape, dtype)
    g_base = random_array(rng, shape, dtype)

    def relayout(a):
        if layout == "F":
            return np.asfortranarray(a)
        if layout == "strided":
            padded = np.zeros((a.shape[0] * 2,) + a.shape[1:], dtype)
            padded[::2] = a
            return padded[::2]
        return np.ascontiguousarray(a.T).T

    x, g = relayout(base), relayout(g_base)
    assert not x.flags.c_contiguous
    C = shape[1]
    w, b, rm, rv = _params(rng, C, dtype)
    w_strided = np.repeat(w, 2)[::2]
    for training in (True, False):
        got = F.batch_norm_forward(x, w_strided, b, rm.copy(), rv.copy(), training)
        want = F.batch_norm_forward(base, w, b, rm.copy(), rv.copy(), training)
        terms, n = forward_terms(base, w, b)
        if not training:
            scale = w / np.sqrt(rv + 1e-5)
            terms["y"], n = _affine_terms(base, scale, np.abs(b) + np.abs(rm * scale))[0], 3
            terms["mean"] = np.abs(rm)
        for a, e, t in zip(got, want, [terms["y"], terms["mean"], want[2]]):
            assert_sum_close(a, e, t, n, dtype)
        got_b = F.batch_norm_backward(g, x, w_strided, want[1], want[2], training)
        want_b = F.batch_norm_backward(g_base, base, w, want[1], want[2], training)
        terms, n = backward_terms(g_base, base, w, want[1], want[2], training)
        for a, e, t in zip(got_b, want_b, terms):
            assert_sum_close(a, e, t, n, dtype)
    scale, shift = F.batch_norm_fold(w, b, rm, rv)
    assert_sum_close(F.batch_norm_affine(x, scale, shift), R.batch_norm_affine(base, scale, shift), *_affine_terms(base, scale, shift), dtype)


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 5), (2, 2, 3, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_cpp_backward_matches_finite_differences(rng, shape, training):
    x = rng.normal(0.5, 1.5, shape)
    w, b, rm, rv = _params(rng, shape[1], np.float64)
    g = rng.normal(size=shape)

    def loss():
        return np.sum(g * F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training)[0])

    _, mean, invstd = F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training)
    dx, dw, db = F.batch_norm_backward(g, x, w, mean, invstd, training)
    assert np.abs(dx).max() > 1e-3
    assert_gradient(loss, x, dx)
    assert_gradient(loss, w, dw)
    assert_gradient(loss, b, db)


@pytest.mark.parametrize("dtype", DTYPES)
def test_running_stats_update_over_steps(rng, dtype):
    shape = (16, 5, 3, 3)
    _, _, rm, rv = _params(rng, 5, dtype)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    rm_terms = np.abs(rm.astype(np.float64))
    for step in range(3):
        x = random_array(rng, shape, dtype) * dtype(step + 1)
        F.batch_norm_forward(x, None, None, rm, rv, True, momentum=0.25)
        R.batch_norm_forward(x, None, None, rm_ref, rv_ref, True, momentum=0.25)
        rm_terms = forward_terms(x, None, None, 0.25, rm_terms)[0]["running_mean"]
    n = 16 * 3 * 3
    assert_sum_close(rm, rm_ref, rm_terms, 3 * (n + 2), dtype)
    assert_sum_close(rv, rv_ref, rv_ref, 3 * (n + 2), dtype)  # sums of squares
    # momentum 0 keeps them, momentum 1 replaces them by the batch statistics (unbiased variance)
    x = random_array(rng, shape, dtype)
    keep_m, keep_v = rm.copy(), rv.copy()
    F.batch_norm_forward(x, None, None, rm, rv, True, momentum=0.0)
    np.testing.assert_array_equal(rm, keep_m)
    np.testing.assert_array_equal(rv, keep_v)
    F.batch_norm_forward(x, None, None, rm, rv, True, momentum=1.0)
    xd = x.astype(np.float64)
    terms, n = forward_terms(x, None, None)
    assert_sum_close(rm, xd.mean(axis=(0, 2, 3)), terms["mean"], n, dtype)
    assert_sum_close(rv, xd.var(axis=(0, 2, 3), ddof=1), xd.var(axis=(0, 2, 3), ddof=1), n, dtype)


@requires_torch
@pytest.mark.parametrize("shape", [(8, 16), (4, 6, 10), (3, 5, 7, 7)])
def test_training_and_eval_match_torch(rng, shape):
    import torch

    C = shape[1]
    x = rng.normal(0.5, 2.0, shape)
    w, b, rm, rv = _params(rng, C, np.float64)
    g = rng.normal(size=shape)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, rm_t, rv_t, wt, bt, training=True, momentum=0.2, eps=1e-4)
    yt.backward(torch.tensor(g))
    terms, n = forward_terms(x, w, b, 0.2, rm)
    y, mean, invstd = F.batch_norm_forward(x, w, b, rm, rv, True, momentum=0.2, eps=1e-4)
    assert_sum_close(y, yt.detach().numpy(), terms["y"], n)
    assert_sum_close(rm, rm_t.numpy(), terms["running_mean"], n + 2)
    assert_sum_close(rv, rv_t.numpy(), rv, n + 2)
    dx, dw, db = F.batch_norm_backward(g, x, w, mean, invstd, True)
    for got, want, t in zip((dx, dw, db), (xt.grad, wt.grad, bt.grad), backward_terms(g, x, w, mean, invstd)[0]):
        assert_sum_close(got, want.numpy(), t, n)

    ye = torch.nn.functional.batch_norm(torch.tensor(x), rm_t, rv_t, wt.detach(), bt.detach(), training=False, eps=1e-4)
    y_eval, _, _ = F.batch_norm_forward(x, w, b, rm, rv, False, eps=1e-4)
    scale = w / np.sqrt(rv + 1e-4)
    assert_sum_close(y_eval, ye.numpy(), *_affine_terms(x, scale, np.abs(b) + np.abs(rm * scale)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_variance_is_numerically_sound(rng, dtype):
    # A large offset: E[x^2] - E[x]^2 would cancel catastrophically; deviations from the mean do not.
    offset = 1e8 if dtype == np.float64 else 1e3
    x = (offset + rng.uniform(-1, 1, (300, 3, 4))).astype(dtype)
    _, _, invstd = F.batch_norm_forward(x, None, None, None, None, True, eps=1e-5)
    xd = x.astype(np.float64)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(xd.var(axis=(0, 2)) + 1e-5), rtol=1e-9 if dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("shape", [(256, 1024), (64, 8, 28, 28), (512, 3, 50), (3, 64, 40, 40)])
def test_same_result_with_one_and_two_threads(rng, shape):
    dtype = np.float32
    x = random_array(rng, shape, dtype)
    g = random_array(rng, shape, dtype)
    w, b, rm, rv = _params(rng, shape[1], dtype)
    results = []
    for n in (1, 2):
        with num_threads(n):
            rm_n, rv_n = rm.copy(), rv.copy()
            y, mean, invstd = F.batch_norm_forward(x, w, b, rm_n, rv_n, True)
            grads = F.batch_norm_backward(g, x, w, mean, invstd, True)
            y_eval = F.batch_norm_forward(x, w, b, rm_n, rv_n, False)[0]
            results.append((y, mean, invstd, rm_n, rv_n, *grads, y_eval))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_one_value_per_channel_in_training_is_an_error():
    with pytest.raises(ValueError, match=r"\[batch_norm_forward\] Expected more than 1 value per channel when training"):
        F.batch_norm_forward(np.ones((1, 4), np.float32), None, None, None, None, True)
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel"):
        F.batch_norm_forward(np.ones((1, 4, 1, 1)), None, None, None, None, True)
    y = F.batch_norm_forward(np.ones((1, 4)), None, None, np.zeros(4), np.ones(4), False)[0]  # eval is fine
    assert_close(y, np.full((1, 4), 1 / np.sqrt(1 + 1e-5)))


X32 = np.ones((4, 3), np.float32)
V32 = np.ones(3, np.float32)


def _fwd(**kw):
    args = dict(x=X32, weight=V32, bias=V32, running_mean=V32.copy(), running_var=V32.copy(), training=True)
    args.update(kw)
    return F.batch_norm_forward(**args)


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        (dict(x=np.ones(3, np.float32)), ValueError, r"\[batch_norm_forward\] x must be \(N, C\), \(N, C, L\) or \(N, C, H, W\), got shape \(3,\)"),
        (dict(x=np.ones((2, 3, 1, 1, 1), np.float32)), ValueError, r"x must be \(N, C\)"),
        (dict(x=np.ones((0, 3), np.float32)), ValueError, r"\[batch_norm_forward\] x is empty"),
        (dict(x=np.ones((4, 3), np.int32)), TypeError, r"\[batch_norm_forward\] x must be float32 or float64, got int32"),
        (dict(x=[[1.0, 2.0]]), TypeError, r"\[batch_norm_forward\] x must be a numpy.ndarray, got list"),
        (dict(weight=np.ones(4, np.float32)), ValueError, r"weight must have shape \(3,\), got \(4,\)"),
        (dict(bias=np.ones((3, 1), np.float32)), ValueError, r"bias must have shape \(3,\), got \(3, 1\)"),
        (dict(weight=np.ones(3)), TypeError, r"weight must be float32 like the other inputs, got float64"),
        (dict(weight=[1.0, 1.0, 1.0]), TypeError, r"weight must be a numpy.ndarray, got list"),
        (dict(running_mean=np.ones(3)), TypeError, r"running_mean must be float32, got float64"),
        (dict(running_var=np.ones(2, np.float32)), ValueError, r"running_var must have shape \(3,\), got \(2,\)"),
        (dict(running_mean=np.ones(6, np.float32)[::2]), ValueError, r"running_mean is updated in place and must be C-contiguous"),
        (dict(running_var=None), ValueError, r"running_mean and running_var must both be arrays or both be None"),
        (dict(running_mean=None, running_var=None, training=False), ValueError, r"training=False needs running_mean and running_var"),
        (dict(momentum=1.5), ValueError, r"momentum must be in \[0, 1\], got 1.5"),
        (dict(momentum=-0.1), ValueError, r"momentum must be in \[0, 1\]"),
        (dict(momentum=float("nan")), ValueError, r"\[batch_norm_forward\] momentum must be finite, got nan"),
        (dict(eps=0.0), ValueError, r"eps must be > 0, got 0"),
        (dict(eps=float("inf")), ValueError, r"eps must be finite, got inf"),
        (dict(eps=-1e-5), ValueError, r"eps must be > 0"),
    ],
)
def test_forward_bad_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        _fwd(**kw)


def test_forward_running_stats_must_be_writeable_and_unaliased():
    ro = V32.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"running_mean is updated in place and must be writeable"):
        _fwd(running_mean=ro)
    both = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"running_mean and running_var must not share memory"):
        _fwd(running_mean=both, running_var=both)
    w = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"must not share memory with an input"):
        _fwd(weight=w, running_mean=w)


G32 = np.ones((4, 3), np.float32)


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((np.ones((4, 2), np.float32), X32, V32, V32, V32), ValueError, r"\[batch_norm_backward\] grad_out must have shape \(4, 3\), got \(4, 2\)"),
        ((G32.astype(np.float64), X32, V32, V32, V32), TypeError, r"\[batch_norm_backward\] grad_out must be float32 like the other inputs, got float64"),
        ((G32, X32, V32, np.ones(2, np.float32), V32), ValueError, r"save_mean must have shape \(3,\), got \(2,\)"),
        ((G32, X32, V32, V32, np.ones(3)), TypeError, r"save_invstd must be float32 like the other inputs"),
        ((G32, X32, V32, V32, None), TypeError, r"save_invstd must be a numpy.ndarray, got NoneType"),
        ((G32, X32, np.ones(2, np.float32), V32, V32), ValueError, r"weight must have shape \(3,\)"),
        ((G32, np.ones(4, np.float32), V32, V32, V32), ValueError, r"\[batch_norm_backward\] x must be \(N, C\)"),
        ((G32, np.ones((4, 3), np.int64), V32, V32, V32), TypeError, r"x must be float32 or float64, got int64"),
        ((G32, np.ones((0, 3), np.float32), V32, V32, V32), ValueError, r"\[batch_norm_backward\] x is empty"),
    ],
)
def test_backward_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        F.batch_norm_backward(*args)


def test_fold_and_affine_bad_input():
    with pytest.raises(ValueError, match=r"\[batch_norm_fold\] running_var must have shape \(3,\), got \(4,\)"):
        F.batch_norm_fold(None, None, V32, np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"\[batch_norm_fold\] bias must be float32"):
        F.batch_norm_fold(V32, np.ones(3), V32, V32)
    with pytest.raises(ValueError, match=r"\[batch_norm_fold\] running_mean must be \(C,\), got shape \(3, 1\)"):
        F.batch_norm_fold(None, None, np.ones((3, 1), np.float32), V32)
    with pytest.raises(ValueError, match=r"\[batch_norm_fold\] eps must be > 0"):
        F.batch_norm_fold(None, None, V32, V32, eps=0.0)
    with pytest.raises(ValueError, match=r"\[batch_norm_fold\] eps must be finite"):
        F.batch_norm_fold(None, None, V32, V32, eps=float("nan"))
    with pytest.raises(TypeError, match=r"\[batch_norm_fold\] running_mean must be float32 or float64, got int64"):
        F.batch_norm_fold(None, None, np.ones(3, np.int64), V32)
    with pytest.raises(ValueError, match=r"\[batch_norm_affine\] shift must have shape \(3,\), got \(4,\)"):
        F.batch_norm_affine(X32, V32, np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"\[batch_norm_affine\] scale must be float32 like the other inputs"):
        F.batch_norm_affine(X32, np.ones(3), V32)
    with pytest.raises(ValueError, match=r"\[batch_norm_affine\] x must be \(N, C\)"):
        F.batch_norm_affine(np.ones(3, np.float32), V32, V32)
    with pytest.raises(TypeError, match=r"\[batch_norm_affine\] x must be a numpy.ndarray"):
        F.batch_norm_affine(3.0, V32, V32)
    with pytest.raises(ValueError, match=r"\[batch_norm_affine\] x is empty"):
        F.batch_norm_affine(np.ones((2, 3, 0), np.float32), V32, V32)
