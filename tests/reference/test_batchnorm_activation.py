"""Reference batch norm + ReLU + dropout: finite differences (float64) and PyTorch as independent oracles."""

import numpy as np
import pytest

from fastnn import reference as R
from fastnn.reference.batchnorm_activation import KEPT, RELU_PASS
from tests.conftest import assert_gradient, assert_sum_close, requires_torch
from tests.reference.test_batchnorm import backward_terms, forward_terms

SHAPES = [(6, 3), (4, 3, 5), (3, 2, 2, 3)]


def _params(rng, C):
    return rng.uniform(0.5, 2.0, C), rng.uniform(-1.0, 1.0, C), rng.uniform(-1.0, 1.0, C), rng.uniform(0.5, 2.0, C)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_backward_matches_finite_differences(rng, shape, training):
    """The mask is fixed by (seed, step), so the forward is a smooth function of x away from relu's kink."""
    x, g = rng.normal(size=shape), rng.normal(size=shape)  # random upstream gradient
    w, b, rm, rv = _params(rng, shape[1])
    stats = (None, None) if training else (rm, rv)

    def loss():
        return np.sum(g * R.batch_norm_relu_forward(x, w, b, *stats, training, p=0.4, seed=3, step=1)[0])

    _, mean, invstd, mask = R.batch_norm_relu_forward(x, w, b, *stats, training, p=0.4, seed=3, step=1)
    assert np.any((mask & RELU_PASS) == 0) and np.any(mask & RELU_PASS)
    if training:
        assert np.any((mask & KEPT) == 0)
    dx, dw, db = R.batch_norm_relu_backward(g, x, w, mean, invstd, mask, training, p=0.4)
    assert_gradient(loss, x, dx)
    assert_gradient(loss, w, dw)
    assert_gradient(loss, b, db)


@requires_torch
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_matches_torch_batch_norm_relu_with_the_same_mask(rng, shape, training):
    import torch

    x, g = rng.normal(size=shape), rng.normal(size=shape)
    w, b, rm, rv = _params(rng, shape[1])
    rm_r, rv_r = rm.copy(), rv.copy()
    y, mean, invstd, mask = R.batch_norm_relu_forward(x, w, b, rm_r, rv_r, training, 0.1, 1e-5, p=0.5, seed=8, step=2)
    keep = torch.from_numpy(((mask & KEPT) != 0).astype(np.float64))
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    rm_t, rv_t = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    z = torch.nn.functional.batch_norm(xt, rm_t, rv_t, wt, bt, training, 0.1, 1e-5)
    yt = torch.relu(z) * keep / (0.5 if training else 1.0)
    yt.backward(torch.from_numpy(g))
    scale = np.where((mask & KEPT) != 0, 2.0 if training else 1.0, 0.0)  # ReLU's slope <= 1, dropout's 1 / (1 - p)
    terms, n = forward_terms(x, w, b, 0.1, rm)
    if not training:  # the folded affine scale x + shift
        s = np.abs(w) / np.sqrt(rv + 1e-5)
        per_c = (1, -1) + (1,) * (x.ndim - 2)
        terms["y"], n = s.reshape(per_c) * np.abs(x) + (np.abs(b) + np.abs(rm) * s).reshape(per_c), 3
    assert_sum_close(y, yt.detach().numpy(), terms["y"] * scale, n)
    if training:
        assert_sum_close(rm_r, rm_t.numpy(), terms["running_mean"], n + 2)
        assert_sum_close(rv_r, rv_t.numpy(), rv_r, n + 2)  # a sum of squares
    else:
        np.testing.assert_array_equal(rm_r, rm_t.numpy())
        np.testing.assert_array_equal(rv_r, rv_t.numpy())
    dx, dw, db = R.batch_norm_relu_backward(g, x, w, mean, invstd, mask, training, p=0.5)
    (tx, tw, tb), n = backward_terms(g * scale * ((mask & RELU_PASS) != 0), x, w, mean, invstd, training)
    assert_sum_close(dx, xt.grad.numpy(), tx, n if training else 1)
    assert_sum_close(dw, wt.grad.numpy(), tw, n)
    assert_sum_close(db, bt.grad.numpy(), tb, n)
