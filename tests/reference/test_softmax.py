"""Reference softmax / log_softmax: backward vs central differences (float64), forward and backward vs torch."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import TOL, assert_gradient, assert_sum_close, requires_torch

SHAPES = [(6,), (3, 5), (2, 3, 4), (4, 1)]


def softmax_terms(op, x, y, g):
    """Terms of (forward, backward) over the last axis of k values, and k.

    softmax's y = e / sum e has positive terms (its own terms); log_softmax's y = x - max - lse
    cancels where one x dominates: |x - max| + lse. Backward: y (g - sum g y) and g - e^y sum g."""
    x, y, g = (np.asarray(a, np.float64) for a in (x, y, g))
    k = x.shape[-1]
    if op == "softmax":
        return y, y * (np.abs(g) + np.abs(g * y).sum(-1, keepdims=True)), k
    shifted = np.abs(x - x.max(-1, keepdims=True))
    lse = np.log(np.exp(-shifted).sum(-1, keepdims=True))
    return shifted + lse, np.abs(g) + np.exp(y) * np.abs(g).sum(-1, keepdims=True), k


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_backward_matches_finite_differences(rng, shape):
    x = rng.uniform(-3, 3, size=shape)
    g = rng.standard_normal(shape)
    analytic = R.softmax_backward(g, R.softmax_forward(x))
    assert_gradient(lambda: np.sum(g * R.softmax_forward(x)), x, analytic)


@pytest.mark.parametrize("shape", SHAPES)
def test_log_softmax_backward_matches_finite_differences(rng, shape):
    x = rng.uniform(-3, 3, size=shape)
    g = rng.standard_normal(shape)
    analytic = R.log_softmax_backward(g, R.log_softmax_forward(x))
    assert_gradient(lambda: np.sum(g * R.log_softmax_forward(x)), x, analytic)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_sum_to_one_and_large_inputs_are_stable(rng, dtype):
    x = (rng.standard_normal((5, 7)) * 1000).astype(dtype)  # exp(x) alone would overflow
    y = R.softmax_forward(x)
    assert y.dtype == dtype and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(-1), 1, rtol=1e-6)
    ly = R.log_softmax_forward(x)
    assert ly.dtype == dtype and np.all(np.isfinite(ly)) and np.all(ly <= 0)
    np.testing.assert_allclose(np.exp(ly), y, rtol=1e-5, atol=1e-30)


def test_softmax_is_shift_invariant(rng):
    x = rng.standard_normal((4, 6))
    np.testing.assert_allclose(R.softmax_forward(x + 123.0), R.softmax_forward(x), rtol=1e-12)


@requires_torch
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch(rng, op, shape):
    import torch

    x = rng.uniform(-5, 5, size=shape)
    g = rng.standard_normal(shape)
    t = torch.tensor(x, requires_grad=True)
    ty = getattr(torch.nn.functional, op)(t, dim=-1)
    ty.backward(torch.tensor(g))
    y = getattr(R, f"{op}_forward")(x)
    ty_terms, tg_terms, k = softmax_terms(op, x, y, g)
    assert_sum_close(y, ty.detach().numpy(), ty_terms, k, rtol=TOL[np.float64]["rtol"])  # exp, log
    assert_sum_close(getattr(R, f"{op}_backward")(g, y), t.grad.numpy(), tg_terms, k)
