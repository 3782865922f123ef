"""Reference linear layer: gradients vs central finite differences, values vs PyTorch."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import TOL, assert_gradient, assert_sum_close, random_array, requires_torch

ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]


def torch_linear(x, weight, bias, activation, negative_slope, grad_out):
    """PyTorch's y = act(F.linear(x, W, b)) and its autograd gradients (dx, dW, db or None)."""
    import torch

    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    tb = None if bias is None else torch.tensor(bias, requires_grad=True)
    z = torch.nn.functional.linear(tx, tw, tb)
    y = {
        "none": lambda: z,
        "relu": lambda: torch.relu(z),
        "leaky_relu": lambda: torch.nn.functional.leaky_relu(z, negative_slope),
        "sigmoid": lambda: torch.sigmoid(z),
        "tanh": lambda: torch.tanh(z),
    }[activation]()
    y.backward(torch.tensor(grad_out))
    db = None if tb is None else tb.grad.numpy()
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), db


def _abs64(a):
    return None if a is None else np.abs(np.asarray(a, np.float64))


def forward_terms(x, w, b):
    """|x| |W|^T + |b| and the count of terms summed per output (a bias is one more)."""
    return R.linear_forward(_abs64(x), _abs64(w), _abs64(b)), x.shape[1] + (b is not None)


# act'(y) as a sum of terms in absolute value: 1 - y^2 and y - y^2 cancel as y nears 1, but their
# rounding is that of 1 + y^2 and y + y^2.
_DERIVATIVE_TERMS = {"sigmoid": lambda y: y + y * y, "tanh": lambda y: 1 + y * y}


def backward_terms(grad_out, x, w, y, activation, slope=0.01, own_y=None):
    """The terms of (g W, g^T x, sum g) with g = grad_out act'(y), and their counts.

    own_y = (z terms, K) of the forward when the two sides differentiate their own outputs (an
    oracle's y is not ours): then act'(y) differs by |act''| |dz| <= 2 (y + y^2 | 1 + y^2) c eps
    sqrt(K) z_terms, which is added, scaled to each output's own sqrt(k)."""
    ks = (w.shape[0], x.shape[0], x.shape[0])
    g = _abs64(grad_out)
    sens = np.zeros_like(g)
    if activation in _DERIVATIVE_TERMS:
        d = _DERIVATIVE_TERMS[activation](_abs64(y))
        if own_y is not None:
            sens = 2 * g * d * own_y[0] * np.sqrt(own_y[1])
        g, activation = g * d, "none"
    yy = None if y is None else np.asarray(y, np.float64)
    terms = [R.linear_backward(g + sens / np.sqrt(k), _abs64(x), _abs64(w), yy, activation, slope)[i] for i, k in enumerate(ks)]
    return terms, ks


def act_rtol(activation, dtype):
    """sigmoid and tanh round (a few ulps of their output) after the sum; relu's and leaky_relu's
    one product is within the sum's bound."""
    return TOL[np.dtype(dtype).type]["rtol"] if activation in ("sigmoid", "tanh") else 0.0


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_backward_matches_finite_differences(rng, activation, with_bias):
    n, n_in, n_out, slope = 4, 5, 3, 0.2
    x, w = random_array(rng, (n, n_in), np.float64), random_array(rng, (n_out, n_in), np.float64)
    b = random_array(rng, (n_out,), np.float64) if with_bias else None
    grad_out = random_array(rng, (n, n_out), np.float64)

    def loss():
        return float(np.sum(R.linear_forward(x, w, b, activation, slope) * grad_out))

    y = R.linear_forward(x, w, b, activation, slope)
    gx, gw, gb = R.linear_backward(grad_out, x, w, y, activation, slope)
    assert_gradient(loss, x, gx)
    assert_gradient(loss, w, gw)
    if with_bias:
        assert_gradient(loss, b, gb)


@requires_torch
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_torch(rng, activation, with_bias):
    n, n_in, n_out, slope = 7, 33, 31, 0.05
    x, w = random_array(rng, (n, n_in), np.float64), random_array(rng, (n_out, n_in), np.float64)
    b = random_array(rng, (n_out,), np.float64) if with_bias else None
    grad_out = random_array(rng, (n, n_out), np.float64)
    ty, tgx, tgw, tgb = torch_linear(x, w, b, activation, slope, grad_out)
    y = R.linear_forward(x, w, b, activation, slope)
    assert_sum_close(y, ty, *forward_terms(x, w, b), rtol=act_rtol(activation, np.float64))
    gx, gw, gb = R.linear_backward(grad_out, x, w, y, activation, slope)
    terms, ks = backward_terms(grad_out, x, w, y, activation, slope, own_y=forward_terms(x, w, b))
    assert_sum_close(gx, tgx, terms[0], ks[0])
    assert_sum_close(gw, tgw, terms[1], ks[1])
    if with_bias:
        assert_sum_close(gb, tgb, terms[2], ks[2])


def test_float32_stays_float32(rng):
    x, w, b = (random_array(rng, s, np.float32) for s in [(3, 4), (2, 4), (2,)])
    for activation in ACTIVATIONS:
        y = R.linear_forward(x, w, b, activation)
        assert y.dtype == np.float32
        assert all(g.dtype == np.float32 for g in R.linear_backward(np.ones_like(y), x, w, y, activation))


def test_sigmoid_does_not_overflow():
    x = np.array([[1.0]])
    y = R.linear_forward(x, np.array([[-1000.0], [1000.0]]), activation="sigmoid")
    np.testing.assert_array_equal(y, [[0.0, 1.0]])


def test_skipped_and_accumulated_gradients(rng):
    x, w = random_array(rng, (3, 4), np.float64), random_array(rng, (2, 4), np.float64)
    grad_out = random_array(rng, (3, 2), np.float64)
    gx, gw, gb = R.linear_backward(grad_out, x, w, need_input_grad=False, need_bias_grad=False)
    assert gx is None and gb is None
    np.testing.assert_allclose(gw, grad_out.T @ x)
    gw_acc, gb_acc = np.ones((2, 4)), np.ones(2)
    _, gw2, gb2 = R.linear_backward(grad_out, x, w, grad_weight_out=gw_acc, grad_bias_out=gb_acc)
    assert gw2 is gw_acc and gb2 is gb_acc
    np.testing.assert_allclose(gw_acc, 1 + grad_out.T @ x)
    np.testing.assert_allclose(gb_acc, 1 + grad_out.sum(0))


def test_bad_arguments():
    x, w = np.ones((2, 3)), np.ones((4, 3))
    with pytest.raises(ValueError, match="activation must be one of 'none', 'relu'"):
        R.linear_forward(x, w, activation="gelu")
    with pytest.raises(ValueError, match="y .* is required"):
        R.linear_backward(np.ones((2, 4)), x, w, activation="relu")
    with pytest.raises(ValueError, match="negative_slope > 0"):
        R.linear_backward(np.ones((2, 4)), x, w, np.ones((2, 4)), "leaky_relu", 0.0)
