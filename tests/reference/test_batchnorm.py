"""Reference batch normalization: finite differences (float64) and PyTorch as independent oracles."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import DTYPES, assert_gradient, assert_sum_close, requires_torch

SHAPES = [(5, 3), (4, 3, 5), (3, 2, 2, 3)]


def _channels(a):
    """|a| in float64 as (N, C, S), and the n = N*S values per channel."""
    z = np.abs(np.asarray(a, np.float64)).reshape(a.shape[0], a.shape[1], -1)
    return z, z.shape[0] * z.shape[2]


def forward_terms(x, weight, bias, momentum=0.1, running_mean=None):
    """Terms of the training forward's sums, per output, and k = n (values per channel).

    mean: sum |x| / n. y = gamma (x - mean) invstd + beta: the mean's error (k terms of |x|) and
    the relative error of invstd (a sum of squares, which cannot cancel) scale (mean|x| + |x - mean|)
    gamma invstd. running_mean adds momentum times the mean's terms to (1 - momentum) |running_mean|.
    invstd and the running variance are sums of squares: they are their own terms."""
    z, n = _channels(x)
    gamma = np.ones(z.shape[1]) if weight is None else np.abs(np.asarray(weight, np.float64))
    beta = np.zeros(z.shape[1]) if bias is None else np.abs(np.asarray(bias, np.float64))
    xs = np.asarray(x, np.float64).reshape(z.shape)
    mean_abs = z.mean(axis=(0, 2))
    mu = xs.mean(axis=(0, 2))
    invstd = 1 / np.sqrt(((xs - mu[None, :, None]) ** 2).mean(axis=(0, 2)))
    y = (gamma * invstd)[None, :, None] * (mean_abs[None, :, None] + np.abs(xs - mu[None, :, None])) + beta[None, :, None]
    terms = dict(y=y.reshape(x.shape), mean=mean_abs, invstd=invstd)
    if running_mean is not None:
        terms["running_mean"] = (1 - momentum) * np.abs(np.asarray(running_mean, np.float64)) + momentum * mean_abs
    return terms, n


def backward_terms(grad_out, x, weight, mean, invstd, training=True):
    """Terms of (dx, dgamma, dbeta) for given mean and invstd, and k = n.

    dbeta = sum g, dgamma = sum g x_hat; training: dx = gamma invstd / n (n g - dbeta - x_hat dgamma),
    whose terms are gamma invstd / n (n |g| + sum |g| + |x_hat| sum |g x_hat|). Eval's dx is a product."""
    g, n = _channels(grad_out)
    gamma = np.ones(g.shape[1]) if weight is None else np.abs(np.asarray(weight, np.float64))
    inv = np.asarray(invstd, np.float64)
    x_hat = np.abs((np.asarray(x, np.float64).reshape(g.shape) - np.asarray(mean, np.float64)[None, :, None]) * inv[None, :, None])
    db, dw = g.sum(axis=(0, 2)), (g * x_hat).sum(axis=(0, 2))
    if training:
        dx = (gamma * inv / n)[None, :, None] * (n * g + db[None, :, None] + x_hat * dw[None, :, None])
    else:
        dx = g * (gamma * inv)[None, :, None]
    return (dx.reshape(x.shape), dw, db), n


def _params(rng, C, dtype=np.float64):
    weight = rng.uniform(0.5, 2.0, C).astype(dtype)
    bias = rng.uniform(-1.0, 1.0, C).astype(dtype)
    running_mean = rng.uniform(-1.0, 1.0, C).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, C).astype(dtype)
    return weight, bias, running_mean, running_var


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_training_backward_matches_finite_differences(rng, shape, affine):
    x = rng.normal(0.5, 1.5, shape)
    w, b, _, _ = _params(rng, shape[1])
    w, b = (w, b) if affine else (None, None)
    g = rng.normal(size=shape)  # random upstream gradient: an all-ones one makes dx exactly 0

    def loss():
        return np.sum(g * R.batch_norm_forward(x, w, b, None, None, True)[0])

    _, mean, invstd = R.batch_norm_forward(x, w, b, None, None, True)
    dx, dw, db = R.batch_norm_backward(g, x, w, mean, invstd, training=True)
    assert np.abs(dx).max() > 1e-3
    assert_gradient(loss, x, dx)
    wg = np.ones(shape[1]) if w is None else w
    bg = np.zeros(shape[1]) if b is None else b
    assert_gradient(lambda: np.sum(g * R.batch_norm_forward(x, wg, bg, None, None, True)[0]), wg, dw)
    assert_gradient(lambda: np.sum(g * R.batch_norm_forward(x, wg, bg, None, None, True)[0]), bg, db)


@pytest.mark.parametrize("shape", SHAPES)
def test_eval_backward_matches_finite_differences(rng, shape):
    x = rng.normal(size=shape)
    w, b, rm, rv = _params(rng, shape[1])
    g = rng.normal(size=shape)

    def loss():
        return np.sum(g * R.batch_norm_forward(x, w, b, rm, rv, False)[0])

    _, mean, invstd = R.batch_norm_forward(x, w, b, rm, rv, False)
    dx, dw, db = R.batch_norm_backward(g, x, w, mean, invstd, training=False)
    assert_gradient(loss, x, dx)
    assert_gradient(loss, w, dw)
    assert_gradient(loss, b, db)


def test_training_forward_normalizes_each_channel(rng):
    x = rng.normal(3.0, 2.0, (6, 4, 5, 5))
    y, mean, invstd = R.batch_norm_forward(x, None, None, None, None, True, eps=0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-12)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(invstd, 1 / x.std(axis=(0, 2, 3)), rtol=1e-12)


def test_eval_is_the_folded_affine(rng):
    x = rng.normal(size=(7, 3, 4))
    w, b, rm, rv = _params(rng, 3)
    y, save_mean, save_invstd = R.batch_norm_forward(x, w, b, rm, rv, False, eps=1e-3)
    expected = w[:, None] * (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-3) + b[:, None]
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_array_equal(save_mean, rm)
    np.testing.assert_allclose(save_invstd, 1 / np.sqrt(rv + 1e-3), rtol=1e-15)
    scale, shift = R.batch_norm_fold(w, b, rm, rv, eps=1e-3)
    np.testing.assert_allclose(R.batch_norm_affine(x, scale, shift), expected, rtol=1e-12)


def test_float32_stays_float32(rng):
    x = rng.normal(size=(4, 3, 2)).astype(np.float32)
    w, b, rm, rv = (a.astype(np.float32) for a in _params(rng, 3))
    for training in (True, False):
        outs = R.batch_norm_forward(x, w, b, rm, rv, training)
        assert all(o.dtype == np.float32 for o in outs)
        grads = R.batch_norm_backward(x, x, w, outs[1], outs[2], training)
        assert all(o.dtype == np.float32 for o in grads)
    assert all(o.dtype == np.float32 for o in R.batch_norm_fold(w, b, rm, rv))


def test_variance_is_two_pass(rng):
    # E[x^2] - E[x]^2 loses everything here (x^2 ~ 1e16 in float64); deviations from the mean do not.
    x = 1e8 + rng.uniform(-1, 1, (1000, 2))
    _, _, invstd = R.batch_norm_forward(x, None, None, None, None, True, eps=1e-5)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x.var(axis=0) + 1e-5), rtol=1e-6)


def test_one_value_per_channel_in_training_is_an_error():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        R.batch_norm_forward(np.ones((1, 3)), None, None, None, None, True)
    R.batch_norm_forward(np.ones((1, 3, 2)), None, None, None, None, True)  # n = 2 is fine


@requires_torch
@pytest.mark.parametrize("shape", SHAPES + [(8, 16)])
@pytest.mark.parametrize("affine", [True, False])
def test_training_matches_torch(rng, shape, affine):
    import torch

    C = shape[1]
    x = rng.normal(0.3, 1.7, shape)
    w, b, rm, rv = _params(rng, C)
    w, b = (w, b) if affine else (None, None)
    g = rng.normal(size=shape)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True) if affine else None
    bt = torch.tensor(b, requires_grad=True) if affine else None
    yt = torch.nn.functional.batch_norm(xt, rm_t, rv_t, wt, bt, training=True, momentum=0.3, eps=1e-4)
    yt.backward(torch.tensor(g))
    _, mean_t, invstd_t = torch.native_batch_norm(torch.tensor(x), None, None, None, None, True, 0.3, 1e-4)

    terms, n = forward_terms(x, w, b, 0.3, rm)
    y, mean, invstd = R.batch_norm_forward(x, w, b, rm, rv, True, momentum=0.3, eps=1e-4)
    assert_sum_close(y, yt.detach().numpy(), terms["y"], n)
    assert_sum_close(mean, mean_t.numpy(), terms["mean"], n)
    assert_sum_close(invstd, invstd_t.numpy(), invstd, n)
    assert_sum_close(rm, rm_t.numpy(), terms["running_mean"], n + 2)  # running stats updated in place
    assert_sum_close(rv, rv_t.numpy(), rv, n + 2)

    dx, dw, db = R.batch_norm_backward(g, x, w, mean, invstd, training=True)
    (tx, tw, tb), n = backward_terms(g, x, w, mean, invstd)
    assert_sum_close(dx, xt.grad.numpy(), tx, n)
    if affine:
        assert_sum_close(dw, wt.grad.numpy(), tw, n)
        assert_sum_close(db, bt.grad.numpy(), tb, n)


@requires_torch
@pytest.mark.parametrize("shape", SHAPES)
def test_eval_matches_torch(rng, shape):
    import torch

    x = rng.normal(size=shape)
    w, b, rm, rv = _params(rng, shape[1])
    g = rng.normal(size=shape)
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, torch.tensor(rm), torch.tensor(rv), wt, bt, training=False, eps=1e-3)
    yt.backward(torch.tensor(g))
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = R.batch_norm_forward(x, w, b, rm, rv, False, eps=1e-3)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(rm, rm0)  # eval leaves the running statistics alone
    np.testing.assert_array_equal(rv, rv0)
    dx, dw, db = R.batch_norm_backward(g, x, w, mean, invstd, training=False)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)  # a product: no sum
    (_, tw, tb), n = backward_terms(g, x, w, mean, invstd, training=False)
    assert_sum_close(dw, wt.grad.numpy(), tw, n)
    assert_sum_close(db, bt.grad.numpy(), tb, n)


# --- BatchNorm2d: the N*H*W values of a channel together; folding into the conv before it ----------

SHAPES_2D = [(1, 3, 5, 4), (4, 17, 3, 2), (2, 1, 1, 7)]


@requires_torch
@pytest.mark.parametrize("shape", SHAPES_2D)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm2d_matches_torch(rng, shape, dtype, training):
    import torch

    C = shape[1]
    x = (rng.normal(0.3, 1.7, shape)).astype(dtype)
    w, b, rm, rv = _params(rng, C, dtype)
    g = rng.normal(size=shape).astype(dtype)
    rm0, rm_t, rv_t = rm.copy(), torch.tensor(rm), torch.tensor(rv)
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, rm_t, rv_t, wt, bt, training=training, momentum=0.2, eps=1e-4)
    yt.backward(torch.tensor(g))

    y, mean, invstd = R.batch_norm_forward(x, w, b, rm, rv, training, momentum=0.2, eps=1e-4)
    assert all(a.dtype == dtype for a in (y, mean, invstd, rm, rv))
    dx, dw, db = R.batch_norm_backward(g, x, w, mean, invstd, training=training)
    (tx, tw, tb), n = backward_terms(g, x, w, mean, invstd, training)
    if training:
        terms, n = forward_terms(x, w, b, 0.2, rm0)
        assert_sum_close(y, yt.detach().numpy(), terms["y"], n)
        assert_sum_close(rm, rm_t.numpy(), terms["running_mean"], n + 2)
        assert_sum_close(rv, rv_t.numpy(), rv, n + 2)
        assert_sum_close(dx, xt.grad.numpy(), tx, n)
    else:
        c = lambda v: np.abs(v.astype(np.float64))[None, :, None, None]  # noqa: E731
        y_terms = c(w * invstd) * (np.abs(x.astype(np.float64)) + c(rm)) + c(b)
        assert_sum_close(y, yt.detach().numpy(), y_terms, 3)  # scale x + shift, shift = beta - mean scale
        assert_sum_close(dx, xt.grad.numpy(), tx, 2)  # g (gamma invstd): products only
    assert_sum_close(dw, wt.grad.numpy(), tw, n)
    assert_sum_close(db, bt.grad.numpy(), tb, n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups, conv_bias, affine", [(1, True, True), (2, False, True), (4, True, False)])
def test_fold_into_conv_equals_conv_then_eval_batch_norm(rng, dtype, groups, conv_bias, affine):
    x = rng.normal(size=(2, 4, 6, 5)).astype(dtype)
    cw = rng.normal(size=(8, 4 // groups, 3, 3)).astype(dtype)
    cb = rng.normal(size=8).astype(dtype) if conv_bias else None
    w, b, rm, rv = _params(rng, 8, dtype)
    w, b = (w, b) if affine else (None, None)
    geometry = dict(stride=2, padding=1, groups=groups)
    z = R.conv2d_forward(x, cw, cb, **geometry)
    expected = R.batch_norm_forward(z, w, b, rm, rv, False, eps=1e-3)[0]
    fw, fb = R.batch_norm_fold_into(cw, cb, w, b, rm, rv, eps=1e-3)
    assert fw.shape == cw.shape and fb.shape == (8,) and fw.dtype == dtype and fb.dtype == dtype
    y = R.conv2d_forward(x, fw, fb, **geometry)
    a64 = lambda v: None if v is None else np.abs(v.astype(np.float64))  # noqa: E731
    scale, _ = R.batch_norm_fold(a64(w), None, rm.astype(np.float64), rv.astype(np.float64), 1e-3)
    terms = (scale[None, :, None, None] * (R.conv2d_forward(a64(x), a64(cw), a64(cb), **geometry) + np.abs(rm)[None, :, None, None])
             + (0 if b is None else np.abs(b)[None, :, None, None]))
    assert_sum_close(y, expected, terms, cw[0].size + 3)


def test_fold_into_linear(rng):
    x, lw, lb = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    w, b, rm, rv = _params(rng, 4)
    fw, fb = R.batch_norm_fold_into(lw, lb, w, b, rm, rv)
    expected = R.batch_norm_forward(x @ lw.T + lb, w, b, rm, rv, False)[0]
    np.testing.assert_allclose(x @ fw.T + fb, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[batch_norm_fold_into\] the layer has 4 output channels, the batch norm 3"):
        R.batch_norm_fold_into(lw, lb, w[:3], b[:3], rm[:3], rv[:3])
