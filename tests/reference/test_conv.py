"""Reference conv2d: a direct sum over the taps and central finite differences (float64) as oracles
independent of torch, then PyTorch's conv2d and its autograd (float32 and float64)."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import DTYPES, assert_gradient, assert_sum_close, random_array, requires_torch

# (N, C, H, W), out_channels, kernel_size, stride, padding, dilation, groups:
# kernels 1/3/5/7, strides 1/2/3, padding 0/1/2, dilation 1/2, groups 1/2/C (depthwise), channels
# 1/3/17, batch 1, non-square images and kernels, an image smaller than the kernel (padding makes it fit).
CASES = [
    ((1, 1, 5, 5), 1, 3, 1, 0, 1, 1),
    ((2, 3, 7, 6), 4, 3, 1, 1, 1, 1),
    ((1, 3, 9, 8), 5, 5, 2, 2, 1, 1),
    ((2, 2, 8, 9), 3, (3, 2), (2, 3), (1, 0), (2, 1), 1),
    ((1, 4, 6, 7), 6, 3, 2, 1, 2, 2),
    ((2, 17, 5, 4), 17, 3, 1, 1, 1, 17),  # depthwise
    ((1, 6, 5, 5), 12, 3, 3, 2, 1, 6),  # depthwise with a channel multiplier of 2
    ((1, 2, 3, 2), 3, 5, 1, 2, 1, 1),  # H, W < kernel
    ((2, 3, 9, 9), 2, 7, 1, 3, 1, 1),
    ((3, 17, 4, 5), 5, 1, 1, 0, 1, 1),  # 1x1: no im2col
    ((1, 6, 7, 5), 4, 1, (2, 3), 0, 1, 2),  # strided, grouped 1x1
    ((2, 3, 4, 4), 2, 1, 1, 1, 1, 1),  # 1x1 with padding: the border is the bias alone
]
CASE_IDS = [f"{c[0]}-o{c[1]}-k{c[2]}-s{c[3]}-p{c[4]}-d{c[5]}-g{c[6]}".replace(" ", "") for c in CASES]


def _abs64(a):
    return None if a is None else np.abs(np.asarray(a, np.float64))


def _args(case, rng, dtype, bias=True):
    shape, O, k, s, p, d, g = case
    kh, kw = (k, k) if isinstance(k, int) else k
    x = random_array(rng, shape, dtype)
    w = random_array(rng, (O, shape[1] // g, kh, kw), dtype)
    b = random_array(rng, (O,), dtype) if bias else None
    return x, w, b, dict(stride=s, padding=p, dilation=d, groups=g)


def direct_conv(x, w, b, stride, padding, dilation, groups):
    """The defining sum of torch.nn.Conv2d, one tap (i, j) at a time, without im2col."""
    (sh, sw), (ph, pw), (dh, dw) = ((v, v) if isinstance(v, int) else v for v in (stride, padding, dilation))
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    P = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.zeros((N, C, H + 2 * ph + sh * P + dh * kh, W + 2 * pw + sw * Q + dw * kw), dtype=x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    y = np.zeros((N, O, P, Q), dtype=x.dtype)
    Og = O // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                tap = xp[:, g * Cg:(g + 1) * Cg, i * dh:i * dh + sh * P:sh, j * dw:j * dw + sw * Q:sw]
                y[:, g * Og:(g + 1) * Og] += np.einsum("ncpq,oc->nopq", tap, w[g * Og:(g + 1) * Og, :, i, j])
    return y if b is None else y + b[:, None, None]


def forward_terms(x, w, b, **geometry):
    """conv(|x|, |W|) + |b| and the count of terms per output (C/G*kh*kw products and a bias)."""
    return R.conv2d_forward(_abs64(x), _abs64(w), _abs64(b), **geometry), w[0].size + 1


def backward_terms(g, x, w, **geometry):
    """The terms of (dx, dW, db), from the reference on absolute values, and their counts: at most
    O/G*kh*kw products land on one input pixel, dW and db sum over the N*P*Q output positions."""
    terms = R.conv2d_backward(_abs64(g), _abs64(x), _abs64(w), **geometry)
    O, _, kh, kw = w.shape
    npq = g.shape[0] * g.shape[2] * g.shape[3]
    return terms, (O // geometry.get("groups", 1) * kh * kw, npq, npq)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_forward_is_the_direct_sum(rng, case):
    x, w, b, geometry = _args(case, rng, np.float64)
    y = R.conv2d_forward(x, w, b, **geometry)
    assert_sum_close(y, direct_conv(x, w, b, **geometry), *forward_terms(x, w, b, **geometry))


# Finite differences cost 2 forwards per element: the smallest cases that still cover groups,
# stride, dilation, padding and 1x1.
FD_CASES = [
    ((1, 2, 4, 3), 2, 3, 1, 1, 1, 1),
    ((2, 4, 5, 4), 4, (3, 2), 2, (2, 1), (1, 2), 2),
    ((1, 3, 3, 3), 3, 3, 1, 1, 1, 3),
    ((2, 2, 3, 4), 3, 1, (1, 2), 0, 1, 1),
    ((1, 1, 2, 2), 2, 3, 2, 2, 1, 1),
]


@pytest.mark.parametrize("case", FD_CASES)
def test_backward_matches_finite_differences(rng, case):
    x, w, b, geometry = _args(case, rng, np.float64)
    g = random_array(rng, R.conv2d_forward(x, w, b, **geometry).shape, np.float64)

    def loss():
        return float(np.sum(R.conv2d_forward(x, w, b, **geometry) * g))

    dx, dw, db = R.conv2d_backward(g, x, w, **geometry)
    assert_gradient(loss, x, dx)
    assert_gradient(loss, w, dw)
    assert_gradient(loss, b, db)


@pytest.mark.parametrize("case", [c for c in CASES if c[2] == 1 and c[4] == 0])
def test_pointwise_path_equals_im2col(rng, case):
    """1x1 kernels without padding skip im2col; the product must be the im2col one's."""
    x, w, b, geometry = _args(case, rng, np.float64)
    s, G = geometry["stride"], geometry["groups"]
    cols = R.im2col(x, 1, s).reshape(-1, G, x.shape[1] // G).transpose(1, 0, 2)
    Y = (cols @ w.reshape(G, -1, x.shape[1] // G).transpose(0, 2, 1)).transpose(1, 0, 2).reshape(cols.shape[1], -1)
    y = R.conv2d_forward(x, w, b, **geometry)
    expected = (Y + b).reshape(y.shape[0], y.shape[2], y.shape[3], -1).transpose(0, 3, 1, 2)
    assert_sum_close(y, expected, *forward_terms(x, w, b, **geometry))
    g = random_array(rng, y.shape, np.float64)
    dx = R.conv2d_backward(g, x, w, **geometry)[0]
    dcols = g.transpose(0, 2, 3, 1).reshape(-1, G, w.shape[0] // G).transpose(1, 0, 2) @ w.reshape(G, -1, x.shape[1] // G)
    expected_dx = R.col2im(dcols.transpose(1, 0, 2).reshape(dcols.shape[1], -1), x.shape, 1, s)
    (tx, _, _), (kx, _, _) = backward_terms(g, x, w, **geometry)
    assert_sum_close(dx, expected_dx, tx, kx)


def torch_conv(x, w, b, grad_out, stride, padding, dilation, groups):
    """PyTorch's y = conv2d(x, W, b) and its autograd gradients (dx, dW, db or None)."""
    import torch

    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    y = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    y.backward(torch.tensor(grad_out))
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), None if tb is None else tb.grad.numpy()


@requires_torch
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch(rng, case, dtype):
    bias = case[2] != 5  # and one case without a bias
    x, w, b, geometry = _args(case, rng, dtype, bias)
    y = R.conv2d_forward(x, w, b, **geometry)
    g = random_array(rng, y.shape, dtype)
    ty, tdx, tdw, tdb = torch_conv(x, w, b, g, **geometry)
    assert_sum_close(y, ty, *forward_terms(x, w, b, **geometry))
    dx, dw, db = R.conv2d_backward(g, x, w, **geometry)
    terms, ks = backward_terms(g, x, w, **geometry)
    assert_sum_close(dx, tdx, terms[0], ks[0])
    assert_sum_close(dw, tdw, terms[1], ks[1])
    if bias:
        assert_sum_close(db, tdb, terms[2], ks[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_is_kept(rng, dtype):
    x, w, b, geometry = _args(CASES[4], rng, dtype)
    y = R.conv2d_forward(x, w, b, **geometry)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert all(a.dtype == dtype for a in R.conv2d_backward(y, x, w, **geometry))


def test_skipped_and_accumulated_gradients(rng):
    x, w, b, geometry = _args(CASES[1], rng, np.float64)
    g = random_array(rng, R.conv2d_forward(x, w, b, **geometry).shape, np.float64)
    dx, dw, db = R.conv2d_backward(g, x, w, **geometry)
    none_x, dw2, none_b = R.conv2d_backward(g, x, w, **geometry, need_input_grad=False, need_bias_grad=False)
    assert none_x is None and none_b is None
    np.testing.assert_array_equal(dw2, dw)
    acc_w, acc_b = np.ones_like(w), np.ones_like(b)
    _, dw3, db3 = R.conv2d_backward(g, x, w, **geometry, grad_weight_out=acc_w, grad_bias_out=acc_b)
    assert dw3 is acc_w and db3 is acc_b
    np.testing.assert_allclose(acc_w, 1 + dw, rtol=1e-15)
    np.testing.assert_allclose(acc_b, 1 + db, rtol=1e-15)
    with pytest.raises(ValueError, match="grad_bias_out is given but need_bias_grad is False"):
        R.conv2d_backward(g, x, w, **geometry, need_bias_grad=False, grad_bias_out=acc_b)


def test_bad_arguments():
    x, w = np.zeros((2, 4, 5, 5)), np.zeros((6, 2, 3, 3))
    with pytest.raises(ValueError, match=r"\[conv2d_forward\] x has 4 channels, weight \(6, 2, 3, 3\) with groups=1 expects 2"):
        R.conv2d_forward(x, w)
    with pytest.raises(ValueError, match=r"\[conv2d_forward\] out_channels 6 is not divisible by groups=4"):
        R.conv2d_forward(x, np.zeros((6, 1, 3, 3)), groups=4)
    with pytest.raises(ValueError, match=r"\[conv2d_forward\] groups must be a positive int, got 0"):
        R.conv2d_forward(x, w, groups=0)
    with pytest.raises(ValueError, match=r"\[conv2d_forward\] x must be \(N, C, H, W\), got \(4, 5, 5\)"):
        R.conv2d_forward(x[0], w, groups=2)
    with pytest.raises(ValueError, match=r"\[conv2d_forward\] weight must be \(out_channels, in_channels/groups, kh, kw\)"):
        R.conv2d_forward(x, w[0], groups=2)
    with pytest.raises(ValueError, match=r"\[conv2d_forward\] bias must be \(6,\), got \(4,\)"):
        R.conv2d_forward(x, w, np.zeros(4), groups=2)
    with pytest.raises(ValueError, match=r"\[conv2d_forward\] the \(dilated\) kernel \(7, 7\) is larger than the padded input \(5, 5\)"):
        R.conv2d_forward(x, np.zeros((2, 4, 7, 7)))
    with pytest.raises(ValueError, match=r"\[conv2d_backward\] grad_out must be \(2, 6, 3, 3\), got \(2, 6, 5, 5\)"):
        R.conv2d_backward(np.zeros((2, 6, 5, 5)), x, w, groups=2)
