"""Dropout reference: keep rate, mask independence across steps and seeds, E[y] = x, identity in
eval mode, gradient vs central differences, the scaling convention vs torch, argument errors."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import assert_gradient, requires_torch

N = 10**6


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_rate_within_five_sigma(p):
    _, mask = R.dropout_forward(np.ones(N, np.float32), p, seed=7, step=3)
    sigma = np.sqrt(p * (1 - p) / N)
    assert abs(mask.mean() - (1 - p)) < 5 * sigma


def test_masks_differ_across_steps_and_seeds():
    x = np.ones(4096)
    masks = {(seed, step): R.dropout_forward(x, 0.5, seed, step)[1] for seed in (0, 1, 2**64 - 1) for step in (0, 1, 2)}
    keys = list(masks)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            # independent fair coins agree on half the elements (5 sigma: 0.5 +- 0.04)
            assert abs((masks[a] == masks[b]).mean() - 0.5) < 5 * 0.5 / np.sqrt(x.size), (a, b)


def test_same_seed_and_step_give_the_same_mask():
    x = np.ones((17, 9))
    np.testing.assert_array_equal(R.dropout_forward(x, 0.3, 5, 6)[1], R.dropout_forward(x, 0.3, 5, 6)[1])


def test_expectation_is_x(rng):
    # E[y_i] = x_i: average y over 2000 steps; each average has std x * sqrt(p / (1 - p) / steps)
    x = rng.uniform(0.5, 2.0, size=64)
    p, steps = 0.5, 2000
    mean = np.mean([R.dropout_forward(x, p, 1, s)[0] for s in range(steps)], axis=0)
    sigma = x * np.sqrt(p / (1 - p) / steps)
    assert (np.abs(mean - x) < 5 * sigma).all()


def test_kept_elements_are_scaled_and_dropped_ones_zero(rng):
    x = rng.uniform(1.0, 2.0, size=(30, 7)).astype(np.float32)
    y, mask = R.dropout_forward(x, 0.25, 3, 4)
    assert y.dtype == np.float32 and mask.dtype == bool and mask.shape == x.shape
    np.testing.assert_allclose(y[mask], x[mask] / 0.75, rtol=1e-7)
    assert (y[~mask] == 0).all()


@pytest.mark.parametrize("kwargs", [dict(p=0.0), dict(p=0.5, training=False)])
def test_identity_when_p_is_zero_or_eval(rng, kwargs):
    x = rng.normal(size=(5, 3))
    y, mask = R.dropout_forward(x, seed=1, step=2, **kwargs)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    assert mask.dtype == bool and mask.all()


def test_gradient(rng):
    x = rng.normal(size=(6, 5))
    up = rng.normal(size=x.shape)
    _, mask = R.dropout_forward(x, 0.4, 2, 9)
    analytic = R.dropout_backward(up, mask, 0.4)
    assert_gradient(lambda: float((up * R.dropout_forward(x, 0.4, 2, 9)[0]).sum()), x, analytic)


@requires_torch
def test_scaling_convention_matches_torch(rng):
    """torch's dropout is also inverted: y = x * mask / (1 - p) and grad = g * mask / (1 - p)."""
    import torch

    x = rng.uniform(1.0, 2.0, size=(50, 40))
    g = rng.normal(size=x.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.dropout(tx, 0.3, True)
    ty.backward(torch.tensor(g))
    mask = ty.detach().numpy() != 0
    np.testing.assert_allclose(ty.detach().numpy(), x * mask / 0.7, rtol=1e-12)
    np.testing.assert_allclose(tx.grad.numpy(), R.dropout_backward(g, mask, 0.3), rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(p=1.0), ValueError, r"\[dropout_forward\] p must be in \[0, 1\), got 1.0"),
        (dict(p=-0.1), ValueError, r"p must be in \[0, 1\)"),
        (dict(p=float("nan")), ValueError, r"p must be finite"),
        (dict(p="0.5"), TypeError, r"p must be a real number, got str"),
        (dict(seed=-1), ValueError, r"seed must be a non-negative integer < 2\*\*64, got -1"),
        (dict(step=2**64), ValueError, r"step must be a non-negative integer < 2\*\*64"),
        (dict(seed=1.0), TypeError, r"seed must be an integer, got float"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        R.dropout_forward(np.ones(3), **kwargs)


def test_backward_bad_mask():
    with pytest.raises(ValueError, match=r"\[dropout_backward\] mask must be bool of shape \(3,\)"):
        R.dropout_backward(np.ones(3), np.ones(3), 0.5)
