"""nn loss classes with PyTorch's constructor arguments: against torch.nn's losses (forward,
backward, reduction "none" with a per-loss upstream gradient), float32 and float64, bad arguments."""

import numpy as np
import pytest

from fastnn import nn
from tests.conftest import DTYPES, requires_torch

N, C = 9, 4


def cases(rng, dtype):
    w = rng.uniform(0.3, 2.0, C)
    y = rng.integers(0, C, N)
    y[3] = -100
    onehot = np.eye(C, dtype=dtype)[rng.integers(0, C, N)]
    values = rng.normal(0, 1, (N, C)).astype(dtype)
    return [
        ("CrossEntropyLoss", {"weight": w, "label_smoothing": 0.1}, y),
        ("CrossEntropyLoss", {"ignore_index": 2}, np.where(y < 0, 2, y)),
        ("CrossEntropyLoss", {"weight": w}, rng.dirichlet(np.ones(C), N).astype(dtype)),
        ("NLLLoss", {"weight": w}, y),
        ("BCEWithLogitsLoss", {"pos_weight": rng.uniform(0.5, 3, C)}, onehot),
        ("BCEWithLogitsLoss", {"weight": rng.uniform(0.5, 3, (N, 1))}, onehot),
        ("MSELoss", {}, values),
        ("L1Loss", {}, values),
        ("SmoothL1Loss", {"beta": 0.4}, values),
        ("HuberLoss", {"delta": 0.6}, values),
    ]


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_torch(rng, dtype, reduction):
    import torch

    for name, kw, target in cases(rng, dtype):
        x = rng.normal(0, 2, (N, C)).astype(dtype)
        ours = getattr(nn, name)(reduction=reduction, **kw)
        theirs = getattr(torch.nn, name)(reduction=reduction, **{
            k: torch.tensor(v, dtype=torch.float64 if dtype == np.float64 else torch.float32) for k, v in kw.items()
            if isinstance(v, np.ndarray)}, **{k: v for k, v in kw.items() if not isinstance(v, np.ndarray)})
        tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        tt = torch.tensor(target) if target.dtype.kind == "i" else torch.tensor(target, dtype=torch.float64)
        theirs = theirs.double()
        want = theirs(tx, tt)
        loss = ours(x, target)
        tol = 1e-5 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(loss, want.detach().numpy(), rtol=tol, atol=tol, err_msg=name)
        g = rng.uniform(-1, 1, want.shape) if reduction == "none" else 1.0
        want.backward(torch.tensor(g, dtype=torch.float64))
        grad = ours.backward(g)
        assert grad.dtype == dtype and grad.shape == x.shape
        np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=tol, atol=tol, err_msg=name)


def test_reduction_none_returns_the_losses(rng):
    x = rng.normal(size=(5, 3)).astype(np.float32)
    y = np.array([0, 2, 1, -100, 2])
    losses = nn.CrossEntropyLoss(reduction="none")(x, y)
    assert losses.shape == (5,) and losses.dtype == np.float64 and losses[3] == 0
    assert nn.CrossEntropyLoss(reduction="sum")(x, y) == pytest.approx(losses.sum(), rel=1e-12)
    assert nn.L1Loss(reduction="none")(x, x + 1).shape == (5, 3)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label_smoothing must be"):
        nn.CrossEntropyLoss(label_smoothing=2.0)
    with pytest.raises(ValueError, match=r"NLLLoss: weight must be a non-empty 1-D array of finite numbers"):
        nn.NLLLoss(weight=np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: ignore_index must be an int, got float"):
        nn.CrossEntropyLoss(ignore_index=1.0)
    with pytest.raises(ValueError, match=r"HuberLoss: delta must be"):
        nn.HuberLoss(delta=0.0)
    with pytest.raises(RuntimeError, match=r"L1Loss.backward called before the loss was computed"):
        nn.L1Loss().backward()
    assert repr(nn.SmoothL1Loss(beta=0.5)) == "SmoothL1Loss(reduction='mean', beta=0.5)"
    assert repr(nn.CrossEntropyLoss(label_smoothing=0.1)) == "CrossEntropyLoss(reduction='mean', label_smoothing=0.1)"
