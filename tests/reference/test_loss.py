"""Loss references: gradients vs central differences (float64, random upstream gradient), values
and gradients vs torch.nn.functional, large logits, argument errors."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import assert_gradient, assert_sum_close, requires_torch, sum_bound

REDUCTIONS = ["mean", "sum"]


def probabilities(rng, n, c):
    t = rng.uniform(0.0, 1.0, size=(n, c))
    return t / t.sum(axis=1, keepdims=True)


def ce_targets(rng, n, c):
    """Every kind of cross-entropy target: int64 and int32 labels, probabilities, unnormalized weights."""
    labels = rng.integers(0, c, n)
    return {
        "int64": labels,
        "int32": labels.astype(np.int32),
        "probs": probabilities(rng, n, c),
        "weights": rng.uniform(0.0, 2.0, size=(n, c)),  # rows not summing to 1: the softmax * sum(t) term
    }


def loss_terms(name, a, t, g, reduction):
    """(terms of the loss, its count k, terms of the gradient for upstream g, their count).

    cross entropy's row loss lse(z) - sum t z and gradient softmax sum t - t cancel as the target
    class dominates; so do binary cross entropy's max(z, 0) - z t + log(1 + e^-|z|) and sigmoid - t.
    The mean's 1/N is one more rounding, within the bound."""
    z = np.asarray(a, np.float64)
    scale = 1.0 / (z.shape[0] if name == "cross_entropy" else z.size) if reduction == "mean" else 1.0
    if name == "cross_entropy":
        tm = np.eye(z.shape[1])[t] if t.ndim == 1 else np.asarray(t, np.float64)
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) + z.max(1, keepdims=True)
        loss = (tm * (np.abs(z) + np.abs(lse))).sum() * scale
        p = np.exp(z - lse)
        return loss, z.size, (p * tm.sum(1, keepdims=True) + tm) * abs(g) * scale, z.shape[1] + 1
    tt = np.asarray(t, np.float64)
    if name == "binary_cross_entropy_with_logits":
        loss = (np.abs(z) * (1 + tt) + np.log1p(np.exp(-np.abs(z)))).sum() * scale
        return loss, z.size + 3, (1 / (1 + np.exp(-z)) + tt) * abs(g) * scale, 2
    loss = ((z - tt) ** 2).sum() * scale  # mse: squares cannot cancel
    return loss, z.size, 2 * np.abs(z - tt) * abs(g) * scale, 1


# ---- gradients vs central differences -----------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["int64", "int32", "probs", "weights"])
def test_cross_entropy_gradient(rng, reduction, kind):
    z = rng.normal(size=(5, 4))
    t = ce_targets(rng, 5, 4)[kind]
    g = rng.normal()
    analytic = R.cross_entropy_backward(z, t, g, reduction)
    assert_gradient(lambda: g * R.cross_entropy_forward(z, t, reduction), z, analytic)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_gradient(rng, reduction):
    z = rng.normal(scale=3.0, size=(3, 4, 2))
    t = rng.uniform(size=z.shape)
    g = rng.normal()
    analytic = R.binary_cross_entropy_with_logits_backward(z, t, g, reduction)
    assert_gradient(lambda: g * R.binary_cross_entropy_with_logits_forward(z, t, reduction), z, analytic)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_gradient(rng, reduction):
    x = rng.normal(size=(4, 3))
    t = rng.normal(size=x.shape)
    g = rng.normal()
    analytic = R.mse_backward(x, t, g, reduction)
    assert_gradient(lambda: g * R.mse_forward(x, t, reduction), x, analytic)


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy_with_logits", "mse"])
def test_forward_backward_is_forward_and_backward(rng, name):
    z = rng.normal(size=(6, 5))
    t = rng.integers(0, 5, 6) if name == "cross_entropy" else rng.uniform(size=z.shape)
    loss, grad = getattr(R, f"{name}_forward_backward")(z, t, "sum")
    assert loss == getattr(R, f"{name}_forward")(z, t, "sum")
    np.testing.assert_array_equal(grad, getattr(R, f"{name}_backward")(z, t, 1.0, "sum"))


# ---- vs torch -----------------------------------------------------------------------------------


def torch_loss_and_grad(fn, z, t, g, reduction):
    import torch

    tz = torch.tensor(z, requires_grad=True)
    loss = fn(tz, torch.from_numpy(t), reduction=reduction)
    loss.backward(torch.tensor(g, dtype=tz.dtype))
    return loss.item(), tz.grad.numpy()


@requires_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["int64", "int32", "probs", "weights"])
def test_cross_entropy_matches_torch(rng, reduction, kind):
    import torch

    z = rng.normal(scale=3.0, size=(7, 5))
    t = ce_targets(rng, 7, 5)[kind]
    g = rng.normal()
    t_torch = t.astype(np.int64) if kind == "int32" else t  # torch wants int64 labels
    want_loss, want_grad = torch_loss_and_grad(torch.nn.functional.cross_entropy, z, t_torch, g, reduction)
    loss_t, loss_k, grad_t, grad_k = loss_terms("cross_entropy", z, t, g, reduction)
    assert abs(R.cross_entropy_forward(z, t, reduction) - want_loss) <= sum_bound(loss_t, loss_k, np.float64)
    assert_sum_close(R.cross_entropy_backward(z, t, g, reduction), want_grad, grad_t, grad_k)


@requires_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_matches_torch(rng, reduction):
    import torch

    z = rng.normal(scale=5.0, size=(6, 3))
    t = rng.uniform(size=z.shape)
    g = rng.normal()
    fn = torch.nn.functional.binary_cross_entropy_with_logits
    want_loss, want_grad = torch_loss_and_grad(fn, z, t, g, reduction)
    loss_t, loss_k, grad_t, grad_k = loss_terms("binary_cross_entropy_with_logits", z, t, g, reduction)
    assert abs(R.binary_cross_entropy_with_logits_forward(z, t, reduction) - want_loss) <= sum_bound(loss_t, loss_k, np.float64)
    assert_sum_close(R.binary_cross_entropy_with_logits_backward(z, t, g, reduction), want_grad, grad_t, grad_k)


@requires_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_matches_torch(rng, reduction):
    import torch

    x = rng.normal(size=(5, 2, 3))
    t = rng.normal(size=x.shape)
    g = rng.normal()
    want_loss, want_grad = torch_loss_and_grad(torch.nn.functional.mse_loss, x, t, g, reduction)
    loss_t, loss_k, grad_t, grad_k = loss_terms("mse", x, t, g, reduction)
    assert abs(R.mse_forward(x, t, reduction) - want_loss) <= sum_bound(loss_t, loss_k, np.float64)
    assert_sum_close(R.mse_backward(x, t, g, reduction), want_grad, grad_t, grad_k)


@requires_torch
def test_large_logits_stay_finite_and_match_torch(rng):
    import torch

    z = rng.normal(scale=1e4, size=(8, 6))
    z[0, 2] = 1e4  # exp(1e4) overflows unless max(z) is subtracted
    labels = rng.integers(0, 6, 8)
    probs = probabilities(rng, 8, 6)
    for t in (labels, probs):
        loss, grad = R.cross_entropy_forward_backward(z, t)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        want_loss, want_grad = torch_loss_and_grad(torch.nn.functional.cross_entropy, z, t, 1.0, "mean")
        np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)
    zb = np.array([-1e4, -30.0, 0.0, 30.0, 1e4])
    tb = np.array([0.0, 1.0, 0.5, 0.0, 1.0])
    loss, grad = R.binary_cross_entropy_with_logits_forward_backward(zb, tb, "sum")
    want_loss, want_grad = torch_loss_and_grad(torch.nn.functional.binary_cross_entropy_with_logits, zb, tb, 1.0, "sum")
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-300)


def test_float32_in_float32_out(rng):
    z = rng.normal(size=(3, 4)).astype(np.float32)
    assert R.cross_entropy_backward(z, np.array([0, 1, 3])).dtype == np.float32
    assert R.binary_cross_entropy_with_logits_backward(z, z).dtype == np.float32
    assert R.mse_backward(z, z).dtype == np.float32
    assert isinstance(R.mse_forward(z, z + 1), float)


# ---- errors -------------------------------------------------------------------------------------

Z = np.zeros((3, 4))


@pytest.mark.parametrize(
    "target,exc,match",
    [
        (np.array([0, 4, 1]), ValueError, r"\[cross_entropy_forward\] target\[1\] = 4 is not a class index in \[0, 4\)"),
        (np.array([0, 1, -2]), ValueError, r"target\[2\] = -2 is not a class index"),
        (np.array([0.0, 1.0, 2.0]), TypeError, r"target of shape \(3,\) holds class labels and must be int64 or int32, got float64"),
        (np.array([0, 1], np.int64), ValueError, r"target must have shape \(3,\), got \(2,\)"),
        (np.zeros((3, 5)), ValueError, r"target must have shape \(3, 4\), got \(3, 5\)"),
        (np.zeros((3, 4), np.float32), TypeError, r"must be float64 like logits, got float32"),
        (np.zeros((3, 4, 1)), ValueError, r"target must be \(N,\) class labels or \(N, C\) class probabilities"),
        (np.array([[np.nan, 1, 0, 0]] * 3), ValueError, r"target \(class probabilities\) must be finite"),
        ([0, 1, 2], TypeError, r"target must be a numpy.ndarray, got list"),
    ],
)
def test_cross_entropy_bad_target(target, exc, match):
    with pytest.raises(exc, match=match):
        R.cross_entropy_forward(Z, target)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"logits must be 2-D \(N, C\), got shape \(4,\)"):
        R.cross_entropy_forward(np.zeros(4), np.array([0]))
    with pytest.raises(TypeError, match=r"logits must be float32 or float64, got int64"):
        R.cross_entropy_forward(np.zeros((3, 4), np.int64), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        R.cross_entropy_backward(Z, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(TypeError, match=r"\[mse_forward\] target must be float64 like input, got float32"):
        R.mse_forward(Z, Z.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[binary_cross_entropy_with_logits_backward\] target must have the shape"):
        R.binary_cross_entropy_with_logits_backward(Z, Z.T)
