"""PyTorch's loss options in the reference: weight, label_smoothing, ignore_index (cross-entropy,
NLL), weight and pos_weight (BCE), reduction "none" with per-loss upstream gradients, and the L1,
smooth L1 and Huber losses: against torch (the oracle) and by finite differences in float64."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import assert_gradient, requires_torch

REDUCTIONS = ["mean", "sum", "none"]
N, C = 7, 5


def labels_with_ignored(rng, n=N, c=C, ignore_index=-100):
    y = rng.integers(0, c, n)
    y[1] = ignore_index
    return y


def ce_cases(rng):
    """(name, target, options) of cross-entropy cases: each option alone and all together."""
    w = rng.uniform(0.2, 2.0, C)
    y = rng.integers(0, C, N)
    probs = rng.dirichlet(np.ones(C), N)
    return [
        ("weight", y, {"weight": w}),
        ("smoothing", y, {"label_smoothing": 0.2}),
        ("ignore", labels_with_ignored(rng), {}),
        ("ignore_3", np.where(np.arange(N) == 2, 3, y) * 0 + np.array([0, 3, 3, 1, 2, 4, 0]), {"ignore_index": 3}),
        ("all", labels_with_ignored(rng), {"weight": w, "label_smoothing": 0.3}),
        ("probs_weight_smoothing", probs, {"weight": w, "label_smoothing": 0.1}),
    ]


def scalar(loss, g):
    """The scalar whose gradient the backward with upstream g gives."""
    return float(np.sum(np.asarray(loss) * g))


def upstream(rng, reduction, shape):
    return rng.uniform(-2, 2, shape) if reduction == "none" else 0.7


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_options_gradient(rng, reduction):
    for name, t, opts in ce_cases(rng):
        z = rng.normal(0, 2, (N, C))
        g = upstream(rng, reduction, (N,))
        analytic = R.cross_entropy_backward(z, t, g, reduction, **opts)
        assert_gradient(lambda: scalar(R.cross_entropy_forward(z, t, reduction, **opts), g), z, analytic)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_gradient(rng, reduction):
    x = rng.normal(0, 2, (N, C))
    y = labels_with_ignored(rng)
    g = upstream(rng, reduction, (N,))
    opts = {"weight": rng.uniform(0.2, 2.0, C)}
    analytic = R.nll_backward(x, y, g, reduction, **opts)
    assert_gradient(lambda: scalar(R.nll_forward(x, y, reduction, **opts), g), x, analytic)


ELEMENTWISE = [
    ("binary_cross_entropy_with_logits", {}),
    ("binary_cross_entropy_with_logits", {"weight": "full", "pos_weight": "cols"}),
    ("binary_cross_entropy_with_logits", {"weight": "row", "pos_weight": "cols"}),
    ("mse", {}),
    ("l1", {}),
    ("smooth_l1", {"beta": 0.5}),
    ("smooth_l1", {"beta": 0.0}),
    ("huber", {"delta": 0.7}),
]


def elementwise_case(rng, name, opts, shape=(N, 3)):
    x = rng.normal(0, 1.5, shape)
    t = rng.uniform(0, 1, shape) if name.startswith("binary") else rng.normal(0, 1.5, shape)
    if name in ("l1", "smooth_l1", "huber"):
        x = np.where(np.abs(x - t) < 1e-3, x + 0.1, x)  # away from the kinks, where differences fail
        if "beta" in opts or "delta" in opts:
            p = opts.get("beta", opts.get("delta"))
            x = np.where(np.abs(np.abs(x - t) - p) < 1e-3, x + 0.01, x)
    kw = {}
    for k, v in opts.items():
        if v == "full":
            kw[k] = rng.uniform(0.2, 2.0, shape)
        elif v == "row":
            kw[k] = rng.uniform(0.2, 2.0, (shape[0], 1))
        elif v == "cols":
            kw[k] = rng.uniform(0.2, 3.0, shape[-1])
        else:
            kw[k] = v
    return x, t, kw


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,opts", ELEMENTWISE)
def test_elementwise_gradient(rng, name, opts, reduction):
    x, t, kw = elementwise_case(rng, name, opts)
    g = upstream(rng, reduction, x.shape)
    fwd, bwd = getattr(R, f"{name}_forward"), getattr(R, f"{name}_backward")
    analytic = bwd(x, t, g, reduction, **kw)
    assert_gradient(lambda: scalar(fwd(x, t, reduction, **kw), g), x, analytic)


# ---- torch, the oracle ----------------------------------------------------------------------------


def torch_result(fn, x, t, g, reduction, **kw):
    import torch

    tx = torch.tensor(x, requires_grad=True)
    tt = torch.tensor(t)
    kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    loss = fn(tx, tt, reduction=reduction, **kw)
    loss.backward(torch.tensor(g) if reduction == "none" else torch.tensor(g, dtype=loss.dtype))
    return loss.detach().numpy(), tx.grad.numpy()


@requires_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_options_match_torch(rng, reduction):
    import torch.nn.functional as TF

    for name, t, opts in ce_cases(rng):
        z = rng.normal(0, 2, (N, C))
        g = upstream(rng, reduction, (N,))
        want_loss, want_grad = torch_result(TF.cross_entropy, z, t, g, reduction, **opts)
        np.testing.assert_allclose(R.cross_entropy_forward(z, t, reduction, **opts), want_loss, rtol=1e-12,
                                   atol=1e-14, err_msg=name)
        np.testing.assert_allclose(R.cross_entropy_backward(z, t, g, reduction, **opts), want_grad, rtol=1e-10,
                                   atol=1e-14, err_msg=name)


@requires_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_matches_torch(rng, reduction):
    import torch.nn.functional as TF

    x = rng.normal(0, 2, (N, C))
    y = labels_with_ignored(rng)
    g = upstream(rng, reduction, (N,))
    for opts in ({}, {"weight": rng.uniform(0.2, 2.0, C)}, {"ignore_index": 2}):
        yy = np.where(y == -100, 0, y) if "ignore_index" in opts else y
        want_loss, want_grad = torch_result(TF.nll_loss, x, yy, g, reduction, **opts)
        np.testing.assert_allclose(R.nll_forward(x, yy, reduction, **opts), want_loss, rtol=1e-12)
        np.testing.assert_allclose(R.nll_backward(x, yy, g, reduction, **opts), want_grad, rtol=1e-12)


@requires_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,opts", ELEMENTWISE)
def test_elementwise_match_torch(rng, name, opts, reduction):
    import torch.nn.functional as TF

    fn = {"binary_cross_entropy_with_logits": TF.binary_cross_entropy_with_logits, "mse": TF.mse_loss,
          "l1": TF.l1_loss, "smooth_l1": TF.smooth_l1_loss, "huber": TF.huber_loss}[name]
    x, t, kw = elementwise_case(rng, name, opts)
    g = upstream(rng, reduction, x.shape)
    want_loss, want_grad = torch_result(fn, x, t, g, reduction, **kw)
    np.testing.assert_allclose(getattr(R, f"{name}_forward")(x, t, reduction, **kw), want_loss, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(getattr(R, f"{name}_backward")(x, t, g, reduction, **kw), want_grad, rtol=1e-10,
                               atol=1e-15)


def test_reference_options_errors():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"\[cross_entropy_forward\] label_smoothing must be in \[0, 1\]"):
        R.cross_entropy_forward(z, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"weight of shape \(3,\) does not broadcast to \(4,\)"):
        R.cross_entropy_forward(z, np.array([0, 1, 2]), weight=np.ones(3))
    with pytest.raises(ValueError, match=r"\[huber_forward\] delta must be > 0, got 0.0"):
        R.huber_forward(z, z, delta=0)
    with pytest.raises(ValueError, match=r"grad must have the shape of the losses \(3,\), got \(4,\)"):
        R.cross_entropy_backward(z, np.array([0, 1, 2]), np.ones(4), "none")
