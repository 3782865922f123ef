"""Pointwise activations, prelu, rrelu: C++ vs reference, layouts, finite differences, threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, ODD_SIZES, assert_close, assert_gradient, assert_sum_close, layouts, num_threads, random_array
from tests.reference.test_activations import prelu_weight_terms

# op -> (forward keyword arguments, what the backward takes besides grad_out: the output y or the input x)
POINTWISE = {
    "sigmoid": ({}, "y"),
    "tanh": ({}, "y"),
    "relu": ({}, "y"),
    "leaky_relu": ({"negative_slope": 0.2}, "x"),
    "elu": ({"alpha": 0.7}, "x"),
    "selu": ({}, "x"),
}

# Every size class: a batch of one, around SIMD and block widths, several blocks plus a tail, 0-d.
SHAPES = [(n,) for n in ODD_SIZES] + [(1, 7), (33, 129), (2, 3, 31, 32), ()]


def forward_backward(mod, name, x, g, kw):
    y = getattr(mod, f"{name}_forward")(x, **kw)
    saved = y if POINTWISE[name][1] == "y" else x
    return y, getattr(mod, f"{name}_backward")(g, saved, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_matches_reference(rng, name, shape, dtype):
    kw = POINTWISE[name][0]
    x = random_array(rng, shape, dtype, -4, 4)
    g = random_array(rng, shape, dtype)
    y, gi = forward_backward(F, name, x, g, kw)
    ry, rgi = forward_backward(R, name, x, g, kw)
    assert_close(y, ry)
    assert_close(gi, rgi)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_extreme_inputs(name, dtype):
    x = np.array([-1e4, -100.0, -30.0, -0.4, -1e-30, 0.0, 1e-30, 0.6, 30.0, 100.0, 1e4], dtype=dtype)
    kw = POINTWISE[name][0]
    g = np.linspace(-1, 1, x.size, dtype=dtype)
    y, gi = forward_backward(F, name, x, g, kw)
    ry, rgi = forward_backward(R, name, x, g, kw)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(gi))
    assert_close(y, ry)
    assert_close(gi, rgi)


@pytest.mark.parametrize("layout", ["F", "strided"])
@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_non_contiguous_inputs(rng, name, layout):
    kw = POINTWISE[name][0]
    x, g = random_array(rng, (9, 13), np.float64, -3, 3), random_array(rng, (9, 13), np.float64)
    y, gi = forward_backward(F, name, x, g, kw)
    y2, gi2 = forward_backward(F, name, layouts(x)[layout], layouts(g)[layout], kw)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(gi2, gi)


@pytest.mark.parametrize("name", POINTWISE)
def test_cpp_backward_matches_finite_differences(rng, name):
    kw = POINTWISE[name][0]
    x = rng.uniform(0.05, 3, size=(3, 5)) * rng.choice([-1.0, 1.0], size=(3, 5))  # away from the kink at 0
    g = rng.standard_normal(x.shape)
    forward = getattr(F, f"{name}_forward")
    _, gi = forward_backward(F, name, x, g, kw)
    assert_gradient(lambda: np.sum(g * forward(x, **kw)), x, gi)


@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_same_with_one_and_two_threads(rng, name):
    kw = POINTWISE[name][0]
    x, g = random_array(rng, (200_003,), np.float32, -4, 4), random_array(rng, (200_003,), np.float32)
    with num_threads(1):
        one = forward_backward(F, name, x, g, kw)
    with num_threads(2):
        two = forward_backward(F, name, x, g, kw)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# ---- prelu -------------------------------------------------------------------------------------

PRELU_CASES = [
    ((1, 1), (1,)),
    ((7, 33), (33,)),
    ((1, 129), (129,)),
    ((31, 32), (1,)),
    ((2, 3, 4, 5), (3,)),
    ((1, 7, 31, 1), (7,)),
    ((3, 2, 33), (1,)),
    ((129,), (1,)),
    ((5, 1, 7), (1,)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape,wshape", PRELU_CASES)
def test_prelu_matches_reference(rng, xshape, wshape, dtype):
    x, g = random_array(rng, xshape, dtype), random_array(rng, xshape, dtype)
    w = random_array(rng, wshape, dtype, -0.5, 0.5)
    assert_close(F.prelu_forward(x, w), R.prelu_forward(x, w))
    gx, gw = F.prelu_backward(g, x, w)
    rgx, rgw = R.prelu_backward(g, x, w)
    assert_close(gx, rgx)
    assert_sum_close(gw, rgw, *prelu_weight_terms(g, x, w))  # a sum over the batch


def test_prelu_non_contiguous_inputs(rng):
    x, g = random_array(rng, (6, 5), np.float64), random_array(rng, (6, 5), np.float64)
    w = random_array(rng, (5,), np.float64)
    ref = F.prelu_backward(g, x, w)
    for layout in ["F", "strided"]:
        np.testing.assert_array_equal(F.prelu_forward(layouts(x)[layout], w), F.prelu_forward(x, w))
        got = F.prelu_backward(layouts(g)[layout], layouts(x)[layout], np.repeat(w, 2)[::2])
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("xshape,wshape", [((4, 5), (5,)), ((2, 3, 2, 2), (3,)), ((3, 4), (1,))])
def test_cpp_prelu_backward_matches_finite_differences(rng, xshape, wshape):
    x = rng.uniform(0.05, 3, size=xshape) * rng.choice([-1.0, 1.0], size=xshape)
    w = rng.uniform(-0.5, 0.5, size=wshape)
    g = rng.standard_normal(xshape)
    gx, gw = F.prelu_backward(g, x, w)
    assert_gradient(lambda: np.sum(g * F.prelu_forward(x, w)), x, gx)
    assert_gradient(lambda: np.sum(g * F.prelu_forward(x, w)), w, gw)


@pytest.mark.parametrize("xshape,wshape", [((300, 1000), (1000,)), ((8, 16, 30, 30), (16,)), ((8, 16, 30, 30), (1,))])
def test_prelu_same_with_one_and_two_threads(rng, xshape, wshape):
    x, g = random_array(rng, xshape, np.float32), random_array(rng, xshape, np.float32)
    w = random_array(rng, wshape, np.float32, -0.5, 0.5)
    with num_threads(1):
        one = (F.prelu_forward(x, w), *F.prelu_backward(g, x, w))
    with num_threads(2):
        two = (F.prelu_forward(x, w), *F.prelu_backward(g, x, w))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# ---- rrelu -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (33, 129), (2, 3, 31, 32)])
@pytest.mark.parametrize("training", [False, True])
def test_rrelu_matches_reference(rng, shape, dtype, training):
    x, g = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    args = dict(lower=0.05, upper=0.45, training=training, seed=12345, step=7)
    y, noise = F.rrelu_forward(x, **args)
    ry, rnoise = R.rrelu_forward(x, **args)
    # The same draws as reference/rng.py; only the rounding of lower + (upper - lower) * u may differ.
    ulp = 2 * np.finfo(dtype).eps
    np.testing.assert_allclose(noise, rnoise, rtol=ulp, atol=0)
    np.testing.assert_allclose(y, ry, rtol=2 * ulp, atol=0)
    assert noise.dtype == dtype and y.dtype == dtype
    assert_close(F.rrelu_backward(g, noise), R.rrelu_backward(g, rnoise))
    if training and x.size > 100:
        assert len(np.unique(noise[x < 0])) > 0.9 * np.sum(x < 0)  # really drawn per element


def test_rrelu_seed_and_step_change_the_draws(rng):
    x = -np.abs(random_array(rng, (1000,), np.float32)) - 0.1
    base = F.rrelu_forward(x, training=True, seed=1, step=1)[1]
    np.testing.assert_array_equal(base, F.rrelu_forward(x, training=True, seed=1, step=1)[1])
    assert not np.array_equal(base, F.rrelu_forward(x, training=True, seed=2, step=1)[1])
    assert not np.array_equal(base, F.rrelu_forward(x, training=True, seed=1, step=2)[1])
    big = F.rrelu_forward(x, training=True, seed=2**64 - 1, step=2**63)[1]
    np.testing.assert_allclose(big, R.rrelu_forward(x, training=True, seed=2**64 - 1, step=2**63)[1], rtol=2.5e-7)


def test_rrelu_defaults_are_eval_mode(rng):
    x = random_array(rng, (4, 5), np.float32)
    y, noise = F.rrelu_forward(x)
    assert_close(noise, np.where(x > 0, 1, (1 / 8 + 1 / 3) / 2).astype(np.float32))


def test_cpp_rrelu_backward_matches_finite_differences(rng):
    x = rng.uniform(0.05, 3, size=(4, 6)) * rng.choice([-1.0, 1.0], size=(4, 6))
    g = rng.standard_normal(x.shape)
    for training in (False, True):
        f = lambda: np.sum(g * F.rrelu_forward(x, 0.1, 0.4, training, 5, 9)[0])  # noqa: E731
        assert_gradient(f, x, F.rrelu_backward(g, F.rrelu_forward(x, 0.1, 0.4, training, 5, 9)[1]))


def test_rrelu_same_with_one_and_two_threads(rng):
    x = random_array(rng, (300_001,), np.float32)
    with num_threads(1):
        one = F.rrelu_forward(x, training=True, seed=9, step=3)
    with num_threads(2):
        two = F.rrelu_forward(x, training=True, seed=9, step=3)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# ---- bad input ---------------------------------------------------------------------------------

f32 = np.ones((2, 3), np.float32)
f64 = np.ones((2, 3), np.float64)


@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_bad_input(name):
    fwd, bwd = getattr(F, f"{name}_forward"), getattr(F, f"{name}_backward")
    saved = POINTWISE[name][1]
    op = rf"\[{name}_forward\]"
    with pytest.raises(TypeError, match=op + " x must be a numpy.ndarray, got list"):
        fwd([1.0, 2.0])
    with pytest.raises(TypeError, match=op + " x must be float32 or float64, got int64"):
        fwd(np.ones(3, np.int64))
    with pytest.raises(ValueError, match=op + r" x is empty \(shape \(0, 3\)\)"):
        fwd(np.ones((0, 3), np.float32))
    op = rf"\[{name}_backward\]"
    with pytest.raises(TypeError, match=op + f" {saved} must be float32 like the other inputs, got float64"):
        bwd(f32, f64)
    with pytest.raises(TypeError, match=op + " grad_out must be float32 or float64, got float16"):
        bwd(f32.astype(np.float16), f32)
    with pytest.raises(ValueError, match=op + rf" {saved} must have shape \(2, 3\), got \(3, 2\)"):
        bwd(f32, f32.T.copy())
    with pytest.raises(ValueError, match=op + " grad_out is empty"):
        bwd(np.ones(0, np.float32), np.ones(0, np.float32))
    with pytest.raises(TypeError, match=op + f" {saved} must be a numpy.ndarray, got tuple"):
        bwd(f32, (1.0,))


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: F.leaky_relu_forward(f32, float("nan")), ValueError, r"\[leaky_relu_forward\] negative_slope must be finite, got nan"),
        (lambda: F.leaky_relu_backward(f32, f32, float("inf")), ValueError, r"\[leaky_relu_backward\] negative_slope must be finite"),
        (lambda: F.leaky_relu_forward(f32, "0.1"), TypeError, r"\[leaky_relu_forward\] negative_slope must be a real number"),
        (lambda: F.elu_forward(f32, float("-inf")), ValueError, r"\[elu_forward\] alpha must be finite, got -inf"),
        (lambda: F.elu_backward(f32, f32, np.nan), ValueError, r"\[elu_backward\] alpha must be finite"),
        (lambda: F.elu_forward(f32, True), TypeError, r"\[elu_forward\] alpha must be a real number, got True"),
        (lambda: F.prelu_forward(f32, np.ones(2, np.float32)), ValueError, r"\[prelu_forward\] weight must have shape \(1,\) or \(C,\) with C = x.shape\[1\] = 3, got \(2,\)"),
        (lambda: F.prelu_forward(np.ones(4, np.float32), np.ones(4, np.float32)), ValueError, r"\[prelu_forward\] x must have a channel dimension \(ndim >= 2\)"),
        (lambda: F.prelu_forward(f32, np.ones((1, 3), np.float32)), ValueError, r"\[prelu_forward\] weight must be 1-D, got shape \(1, 3\)"),
        (lambda: F.prelu_forward(f32, np.ones(3, np.float64)), TypeError, r"\[prelu_forward\] weight must be float32 like the other inputs, got float64"),
        (lambda: F.prelu_forward(f32, np.ones(0, np.float32)), ValueError, r"\[prelu_forward\] weight is empty"),
        (lambda: F.prelu_backward(f32, f32.T.copy(), np.ones(3, np.float32)), ValueError, r"\[prelu_backward\] x must have shape \(2, 3\), got \(3, 2\)"),
        (lambda: F.prelu_backward(f32, f32, [1.0]), TypeError, r"\[prelu_backward\] weight must be a numpy.ndarray, got list"),
        (lambda: F.prelu_backward(f32, f64, np.ones(3, np.float32)), TypeError, r"\[prelu_backward\] x must be float32 like"),
        (lambda: F.rrelu_forward(f32, 0.4, 0.2), ValueError, r"\[rrelu_forward\] need 0 <= lower <= upper, got lower = 0.4, upper = 0.2"),
        (lambda: F.rrelu_forward(f32, -0.1, 0.2), ValueError, r"\[rrelu_forward\] need 0 <= lower <= upper"),
        (lambda: F.rrelu_forward(f32, 0.1, float("inf")), ValueError, r"\[rrelu_forward\] upper must be finite, got inf"),
        (lambda: F.rrelu_forward(f32, float("nan"), 0.2), ValueError, r"\[rrelu_forward\] lower must be finite, got nan"),
        (lambda: F.rrelu_forward(f32, training=1), TypeError, r"\[rrelu_forward\] training must be a bool, got 1"),
        (lambda: F.rrelu_forward(f32, training=True, seed=-1), ValueError, r"\[rrelu_forward\] seed must be an integer in \[0, 2\*\*64\), got -1"),
        (lambda: F.rrelu_forward(f32, training=True, step=2**64), ValueError, r"\[rrelu_forward\] step must be an integer in \[0, 2\*\*64\)"),
        (lambda: F.rrelu_forward(f32, training=True, seed=1.5), TypeError, r"\[rrelu_forward\] seed must be an integer, got 1.5"),
        (lambda: F.rrelu_forward(np.ones((0,), np.float32)), ValueError, r"\[rrelu_forward\] x is empty"),
        (lambda: F.rrelu_forward(np.ones(3, np.int32)), TypeError, r"\[rrelu_forward\] x must be float32 or float64, got int32"),
        (lambda: F.rrelu_backward(f32, f64), TypeError, r"\[rrelu_backward\] noise must be float32 like the other inputs"),
    ],
)
def test_parametrized_ops_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_numpy_scalars_and_flags_are_accepted(rng):
    x = random_array(rng, (3, 4), np.float32)
    assert_close(F.leaky_relu_forward(x, np.float32(0.2)), F.leaky_relu_forward(x, 0.2))
    assert_close(F.elu_forward(x, 1), F.elu_forward(x, 1.0))
    a = F.rrelu_forward(x, np.float64(0.1), 0.3, np.bool_(True), np.int64(4), np.uint64(5))
    b = F.rrelu_forward(x, 0.1, 0.3, True, 4, 5)
    np.testing.assert_array_equal(a[1], b[1])


# ---- the gradient at exactly x = 0: PyTorch's convention (tests/reference/test_activations.py) ----


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", POINTWISE)
def test_gradient_at_zero(name, dtype):
    from tests.reference.test_activations import AT_ZERO, gradient_at_zero

    np.testing.assert_array_equal(gradient_at_zero(F, name, dtype), np.full(2, AT_ZERO[name], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_and_rrelu_gradient_at_zero(dtype):
    from tests.reference.test_activations import PRELU_W, RRELU_LOWER, RRELU_UPPER, ZEROS

    x, g = np.array(ZEROS, dtype), np.ones(2, dtype)
    gx, gw = F.prelu_backward(g, x, np.array([PRELU_W], dtype))
    np.testing.assert_array_equal(gx, np.full(2, PRELU_W, dtype))
    np.testing.assert_array_equal(gw, np.zeros(1, dtype))
    for training in (False, True):
        _, noise = F.rrelu_forward(x, RRELU_LOWER, RRELU_UPPER, training=training, seed=4, step=1)
        np.testing.assert_array_equal(noise, R.rrelu_forward(x, RRELU_LOWER, RRELU_UPPER, training, seed=4, step=1)[1])
        assert np.all(noise < 1)  # the slope a, as PyTorch: not the x > 0 branch's 1
        np.testing.assert_array_equal(F.rrelu_backward(g, noise), noise)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation,want", [("relu", 0.0), ("leaky_relu", 0.2), ("sigmoid", 0.25), ("tanh", 1.0)])
def test_linear_fused_activation_gradient_at_zero(dtype, activation, want):
    """z = x W^T = 0 exactly: the fused backward's act'(0), read from y = act(0), is PyTorch's."""
    x, w = np.zeros((3, 2), dtype), np.ones((4, 2), dtype)
    y = F.linear_forward(x, w, None, activation, 0.2)
    _, _, gb = F.linear_backward(np.ones((3, 4), dtype), x, w, y, activation, 0.2)
    np.testing.assert_array_equal(gb, np.full(4, 3 * want, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layers_gradient_at_zero(dtype):
    from fastnn import nn

    for layer, want in [(nn.ReLU(dtype=dtype), 0.0), (nn.LeakyReLU(0.2, dtype=dtype), 0.2), (nn.ELU(0.7, dtype=dtype), 0.7),
                        (nn.RReLU(0.1, 0.3, dtype=dtype).eval(), 0.2)]:
        x = np.zeros((2, 3), dtype)
        layer(x)
        np.testing.assert_array_equal(layer.backward(np.ones((2, 3), dtype)), np.full((2, 3), want, dtype), err_msg=repr(layer))
