"""Reference pointwise activations: backward vs central differences (float64), forward and backward vs torch."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import assert_gradient, requires_torch

# op -> (forward keyword arguments, what the backward takes besides grad_out: the output y or the input x)
POINTWISE = {
    "sigmoid": ({}, "y"),
    "tanh": ({}, "y"),
    "relu": ({}, "y"),
    "leaky_relu": ({"negative_slope": 0.2}, "x"),
    "elu": ({"alpha": 0.7}, "x"),
    "selu": ({}, "x"),
}


def away_from_zero(rng, shape, margin=0.05):
    """Values in [-3, 3] at least `margin` from the kink at 0, where finite differences are meaningless."""
    x = rng.uniform(margin, 3.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return x


def forward_backward(name, x, g, kw):
    saved = POINTWISE[name][1]
    y = getattr(R, f"{name}_forward")(x, **kw)
    gi = getattr(R, f"{name}_backward")(g, y if saved == "y" else x, **kw)
    return y, gi


@pytest.mark.parametrize("name", POINTWISE)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2, 2)])
def test_pointwise_backward_matches_finite_differences(rng, name, shape):
    kw = POINTWISE[name][0]
    x = away_from_zero(rng, shape)
    g = rng.standard_normal(shape)
    _, analytic = forward_backward(name, x, g, kw)
    forward = getattr(R, f"{name}_forward")
    assert_gradient(lambda: np.sum(g * forward(x, **kw)), x, analytic)


@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_keeps_float32(rng, name):
    kw = POINTWISE[name][0]
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y, gi = forward_backward(name, x, x, kw)
    assert y.dtype == np.float32 and gi.dtype == np.float32


def test_extreme_inputs_do_not_overflow():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4])
    for dtype in (np.float32, np.float64):
        xd = x.astype(dtype)
        s = R.sigmoid_forward(xd)
        assert np.all(np.isfinite(s)) and s[0] == 0 and s[-1] == 1 and s[3] == 0.5
        assert np.all(np.isfinite(R.elu_forward(xd))) and np.all(np.isfinite(R.selu_forward(xd)))
        assert np.all(np.isfinite(R.elu_backward(np.ones_like(xd), xd)))


def test_selu_constants_make_a_fixed_point():
    # SELU's constants are chosen so that zero mean / unit variance input keeps them (Klambauer et al.)
    x = np.random.default_rng(0).standard_normal(2_000_000)
    y = R.selu_forward(x)
    assert abs(y.mean()) < 5e-3 and abs(y.var() - 1) < 5e-3


# ---- prelu -------------------------------------------------------------------------------------

PRELU_CASES = [((6, 4), (4,)), ((3, 4, 2, 3), (4,)), ((2, 3, 5), (3,)), ((6, 4), (1,)), ((3, 2, 2, 2), (1,)), ((7,), (1,))]


@pytest.mark.parametrize("xshape,wshape", PRELU_CASES)
def test_prelu_backward_matches_finite_differences(rng, xshape, wshape):
    x = away_from_zero(rng, xshape)
    w = rng.uniform(-0.5, 0.5, size=wshape)
    g = rng.standard_normal(xshape)
    gx, gw = R.prelu_backward(g, x, w)
    assert gx.shape == xshape and gw.shape == wshape
    assert_gradient(lambda: np.sum(g * R.prelu_forward(x, w)), x, gx)
    assert_gradient(lambda: np.sum(g * R.prelu_forward(x, w)), w, gw)


# ---- rrelu -------------------------------------------------------------------------------------


def test_rrelu_training_backward_matches_finite_differences(rng):
    x = away_from_zero(rng, (4, 6))
    g = rng.standard_normal(x.shape)
    _, noise = R.rrelu_forward(x, 0.1, 0.4, training=True, seed=3, step=5)
    f = lambda: np.sum(g * R.rrelu_forward(x, 0.1, 0.4, training=True, seed=3, step=5)[0])  # noqa: E731
    assert_gradient(f, x, R.rrelu_backward(g, noise))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rrelu_training_slopes_are_uniform_in_range(rng, dtype):
    lower, upper = 0.1, 0.3
    x = -np.ones(200_000, dtype=dtype)
    x[::4] = 2.0
    y, noise = R.rrelu_forward(x, lower, upper, training=True, seed=11, step=2)
    a = noise[x < 0]
    assert noise.dtype == dtype and np.all(noise[x >= 0] == 1)
    assert a.min() >= lower and a.max() <= upper
    assert abs(a.mean() - 0.2) < 1e-3 and abs(a.var() - 0.2**2 / 12) < 1e-4  # U[lower, upper]
    np.testing.assert_array_equal(y, x * noise)


def test_rrelu_draws_depend_on_seed_and_step_only(rng):
    x = -rng.uniform(0.1, 1, size=1000)
    a1 = R.rrelu_forward(x, training=True, seed=1, step=0)[1]
    assert np.array_equal(a1, R.rrelu_forward(x, training=True, seed=1, step=0)[1])
    assert not np.array_equal(a1, R.rrelu_forward(x, training=True, seed=2, step=0)[1])
    assert not np.array_equal(a1, R.rrelu_forward(x, training=True, seed=1, step=1)[1])


def test_rrelu_eval_is_leaky_relu_with_the_mean_slope(rng):
    x = rng.standard_normal((5, 7))
    y, noise = R.rrelu_forward(x, 0.1, 0.3, training=False)
    np.testing.assert_allclose(y, np.where(x >= 0, x, 0.2 * x), rtol=1e-15)
    np.testing.assert_allclose(noise, np.where(x >= 0, 1.0, 0.2), rtol=1e-15)


# ---- torch oracle (float64, autograd) ----------------------------------------------------------


def torch_pointwise(name, kw):
    import torch.nn.functional as TF

    return {
        "sigmoid": lambda t: t.sigmoid(),
        "tanh": lambda t: t.tanh(),
        "relu": TF.relu,
        "leaky_relu": lambda t: TF.leaky_relu(t, kw["negative_slope"]),
        "elu": lambda t: TF.elu(t, kw["alpha"]),
        "selu": TF.selu,
    }[name]


def torch_forward_backward(f, x, g, *params):
    import torch

    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, *params)]
    y = f(*ts)
    y.backward(torch.tensor(g))
    return (y.detach().numpy(), *(t.grad.numpy() for t in ts))


# The seeds cite a leaky slope of 0.2; PyTorch's default is 0.01.
TORCH_CASES = [(name, kw) for name, (kw, _) in POINTWISE.items()] + [
    ("leaky_relu", {"negative_slope": 0.01}),
    ("elu", {"alpha": 1.0}),
]


@requires_torch
@pytest.mark.parametrize("name,kw", TORCH_CASES)
def test_pointwise_matches_torch(rng, name, kw):
    x = rng.uniform(-4, 4, size=(6, 5, 3))
    g = rng.standard_normal(x.shape)
    y, gi = forward_backward(name, x, g, kw)
    ty, tgi = torch_forward_backward(torch_pointwise(name, kw), x, g)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gi, tgi, rtol=1e-12, atol=1e-14)


@requires_torch
@pytest.mark.parametrize("xshape,wshape", PRELU_CASES)
def test_prelu_matches_torch(rng, xshape, wshape):
    import torch.nn.functional as TF

    x = rng.uniform(-3, 3, size=xshape)
    w = rng.uniform(-0.5, 0.5, size=wshape)
    g = rng.standard_normal(xshape)
    ty, tgx, tgw = torch_forward_backward(TF.prelu, x, g, w)
    np.testing.assert_allclose(R.prelu_forward(x, w), ty, rtol=1e-12, atol=1e-14)
    gx, gw = R.prelu_backward(g, x, w)
    np.testing.assert_allclose(gx, tgx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gw, tgw, rtol=1e-10, atol=1e-12)


@requires_torch
@pytest.mark.parametrize("lower,upper", [(1 / 8, 1 / 3), (0.0, 0.5), (0.2, 0.2)])
def test_rrelu_eval_matches_torch(rng, lower, upper):
    import torch.nn.functional as TF

    x = rng.uniform(-3, 3, size=(4, 9))
    g = rng.standard_normal(x.shape)
    ty, tgx = torch_forward_backward(lambda t: TF.rrelu(t, lower, upper, training=False), x, g)
    y, noise = R.rrelu_forward(x, lower, upper, training=False)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(R.rrelu_backward(g, noise), tgx, rtol=1e-12, atol=1e-14)
