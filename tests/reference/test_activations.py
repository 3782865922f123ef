"""Reference pointwise activations: backward vs central differences (float64), forward and backward vs torch."""

import numpy as np
import pytest

from fastnn import reference as R
from fastnn.reference import activations as A
from tests.conftest import assert_gradient, assert_sum_close, requires_torch

# op -> (forward keyword arguments, what the backward takes besides grad_out: the output y or the input x)
POINTWISE = {
    "sigmoid": ({}, "y"),
    "tanh": ({}, "y"),
    "relu": ({}, "y"),
    "leaky_relu": ({"negative_slope": 0.2}, "x"),
    "elu": ({"alpha": 0.7}, "x"),
    "selu": ({}, "x"),
}


def prelu_weight_terms(grad_out, x, weight):
    """Terms of prelu's grad_w[c] = sum of g x over channel c where x < 0, and their count."""
    x64 = np.asarray(x, np.float64)
    _, terms = R.prelu_backward(np.abs(np.asarray(grad_out, np.float64)), -np.abs(x64) * (x64 < 0), np.asarray(weight, np.float64))
    return np.abs(terms), max(1, x64.size // weight.size)


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
    assert noise.dtype == dtype and np.all(noise[x > 0] == 1)
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
    np.testing.assert_allclose(noise, np.where(x > 0, 1.0, 0.2), rtol=1e-15)


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
    assert_sum_close(gw, tgw, *prelu_weight_terms(g, x, w))


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


# ---- the gradient at exactly x = 0 (and -0.0) ---------------------------------------------------
# PyTorch takes the kinked activations' derivative at 0 from the x <= 0 branch: relu'(0) = 0,
# leaky_relu'(0) = negative_slope, elu'(0) = alpha, selu'(0) = scale alpha, prelu'(0) = w, and
# rrelu's noise at 0 is the slope a. Finite differences cannot check this; the table can.
AT_ZERO = {
    "sigmoid": 0.25,
    "tanh": 1.0,
    "relu": 0.0,
    "leaky_relu": POINTWISE["leaky_relu"][0]["negative_slope"],
    "elu": POINTWISE["elu"][0]["alpha"],
    "selu": A.SELU_SCALE * A.SELU_ALPHA,
}
ZEROS = [0.0, -0.0]
PRELU_W, RRELU_LOWER, RRELU_UPPER = 0.3, 0.125, 1.0 / 3


def gradient_at_zero(mod, name, dtype, kw=None):
    """d name / dx at x = [0, -0] with grad_out = 1, from `mod` (fastnn.functional or reference)."""
    kw = POINTWISE[name][0] if kw is None else kw
    x = np.array(ZEROS, dtype)
    g = np.ones_like(x)
    y = getattr(mod, f"{name}_forward")(x, **kw)
    return getattr(mod, f"{name}_backward")(g, y if POINTWISE[name][1] == "y" else x, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_gradient_at_zero(name, dtype):
    np.testing.assert_array_equal(gradient_at_zero(R, name, dtype), np.full(2, AT_ZERO[name], dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prelu_and_rrelu_gradient_at_zero(dtype):
    x, g = np.array(ZEROS, dtype), np.ones(2, dtype)
    gx, gw = R.prelu_backward(g, x, np.array([PRELU_W], dtype))
    np.testing.assert_array_equal(gx, np.full(2, PRELU_W, dtype))
    np.testing.assert_array_equal(gw, np.zeros(1, dtype))  # g x = 0
    _, noise = R.rrelu_forward(x, RRELU_LOWER, RRELU_UPPER, training=False)
    np.testing.assert_array_equal(noise, np.full(2, (RRELU_LOWER + RRELU_UPPER) / 2, dtype))
    _, noise = R.rrelu_forward(x, RRELU_LOWER, RRELU_UPPER, training=True, seed=4, step=1)
    assert np.all((noise >= RRELU_LOWER) & (noise <= RRELU_UPPER))  # a drawn slope, never 1


@requires_torch
@pytest.mark.parametrize("name,kw", TORCH_CASES)
def test_gradient_at_zero_is_torchs(name, kw):
    """The table above is PyTorch's convention (torch is the oracle)."""
    import torch

    for dtype, tdtype in [(np.float32, torch.float32), (np.float64, torch.float64)]:
        t = torch.tensor(ZEROS, dtype=tdtype, requires_grad=True)
        torch_pointwise(name, kw)(t).backward(torch.ones(2, dtype=tdtype))
        np.testing.assert_array_equal(gradient_at_zero(R, name, dtype, kw), t.grad.numpy())


@requires_torch
def test_prelu_and_rrelu_gradient_at_zero_is_torchs():
    import torch
    import torch.nn.functional as TF

    t, w = torch.tensor(ZEROS, dtype=torch.float64, requires_grad=True), torch.tensor([PRELU_W], dtype=torch.float64, requires_grad=True)
    TF.prelu(t, w).backward(torch.ones(2, dtype=torch.float64))
    gx, gw = R.prelu_backward(np.ones(2), np.array(ZEROS), np.array([PRELU_W]))
    np.testing.assert_array_equal(gx, t.grad.numpy())
    np.testing.assert_array_equal(gw, w.grad.numpy())
    t = torch.tensor(ZEROS, dtype=torch.float64, requires_grad=True)
    TF.rrelu(t, RRELU_LOWER, RRELU_UPPER, training=False).backward(torch.ones(2, dtype=torch.float64))
    np.testing.assert_array_equal(R.rrelu_forward(np.array(ZEROS), RRELU_LOWER, RRELU_UPPER)[1], t.grad.numpy())
    noise = torch.zeros(2, dtype=torch.float64)  # training: torch draws a slope for x <= 0
    torch.ops.aten.rrelu_with_noise(torch.tensor(ZEROS, dtype=torch.float64), noise, RRELU_LOWER, RRELU_UPPER, True)
    assert torch.all(noise < 1)
