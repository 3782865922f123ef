"""linear_forward / linear_backward: C++ vs reference and PyTorch, finite differences, layouts,
skipped and accumulated gradients, threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import (
    DTYPES,
    ODD_SIZES,
    assert_sum_close,
    assert_gradient,
    layouts,
    num_threads,
    random_array,
    requires_torch,
)
from tests.reference.test_linear import act_rtol, backward_terms, forward_terms, torch_linear

ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]


def make(rng, n, n_in, n_out, dtype, with_bias=True):
    x = random_array(rng, (n, n_in), dtype)
    w = random_array(rng, (n_out, n_in), dtype, -1 / np.sqrt(n_in), 1 / np.sqrt(n_in))
    b = random_array(rng, (n_out,), dtype) if with_bias else None
    grad_out = random_array(rng, (n, n_out), dtype)
    return x, w, b, grad_out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n", [1, 7, 33, 129])
def test_matches_reference(rng, dtype, activation, n):
    for n_in in ODD_SIZES:
        for n_out in ODD_SIZES:
            x, w, b, grad_out = make(rng, n, n_in, n_out, dtype)
            shape = f"n={n} in={n_in} out={n_out}"
            y = F.linear_forward(x, w, b, activation, 0.1)
            assert_sum_close(y, R.linear_forward(x, w, b, activation, 0.1), *forward_terms(x, w, b),
                             rtol=act_rtol(activation, dtype), err_msg=shape)
            # Both backward passes get the same y, so relu's mask cannot differ at a near-zero output.
            got = F.linear_backward(grad_out, x, w, y, activation, 0.1)
            want = R.linear_backward(grad_out, x, w, y, activation, 0.1)
            terms, ks = backward_terms(grad_out, x, w, y, activation, 0.1)
            for name, g, r, t, k in zip(["grad_input", "grad_weight", "grad_bias"], got, want, terms, ks):
                assert_sum_close(g, r, t, k, err_msg=f"{name} {shape}")


@requires_torch
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("n,n_in,n_out", [(1, 7, 31), (33, 129, 32), (129, 33, 7)])
def test_matches_torch_autograd(rng, activation, with_bias, n, n_in, n_out):
    x, w, b, grad_out = make(rng, n, n_in, n_out, np.float64, with_bias)
    ty, tgx, tgw, tgb = torch_linear(x, w, b, activation, 0.03, grad_out)
    y = F.linear_forward(x, w, b, activation, 0.03)
    assert_sum_close(y, ty, *forward_terms(x, w, b), rtol=act_rtol(activation, np.float64))
    gx, gw, gb = F.linear_backward(grad_out, x, w, y, activation, 0.03, need_bias_grad=with_bias)
    (tx, tw, tb), (kx, kw, kb) = backward_terms(grad_out, x, w, y, activation, 0.03, own_y=forward_terms(x, w, b))
    assert_sum_close(gx, tgx, tx, kx)
    assert_sum_close(gw, tgw, tw, kw)
    if with_bias:
        assert_sum_close(gb, tgb, tb, kb)
    else:
        assert gb is None


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_cpp_backward_matches_finite_differences(rng, activation):
    x, w, b, grad_out = make(rng, 5, 7, 4, np.float64)

    def loss():
        return float(np.sum(F.linear_forward(x, w, b, activation, 0.3) * grad_out))

    y = F.linear_forward(x, w, b, activation, 0.3)
    gx, gw, gb = F.linear_backward(grad_out, x, w, y, activation, 0.3)
    assert_gradient(loss, x, gx)
    assert_gradient(loss, w, gw)
    assert_gradient(loss, b, gb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_layout", ["C", "F", "strided", "T", "colslice"])
@pytest.mark.parametrize("w_layout", ["C", "F", "strided", "T"])
def test_layouts(rng, dtype, x_layout, w_layout):
    x, w, b, grad_out = make(rng, 33, 31, 17, dtype)

    def variants(a):
        wide = np.zeros((a.shape[0], a.shape[1] + 5), dtype)
        wide[:, 2 : 2 + a.shape[1]] = a
        return {**layouts(a), "T": a.T.copy().T, "colslice": wide[:, 2 : 2 + a.shape[1]]}

    xv, wv = variants(x)[x_layout], variants(w)[w_layout]
    y = F.linear_forward(xv, wv, b, "tanh")
    assert_sum_close(y, R.linear_forward(x, w, b, "tanh"), *forward_terms(x, w, b), rtol=act_rtol("tanh", dtype))
    got, want = F.linear_backward(grad_out, xv, wv, y, "tanh"), R.linear_backward(grad_out, x, w, y, "tanh")
    for g, r, t, k in zip(got, want, *backward_terms(grad_out, x, w, y, "tanh")):
        assert_sum_close(g, r, t, k)


def test_non_contiguous_grad_out_y_bias(rng):
    x, w, b, grad_out = make(rng, 9, 6, 5, np.float64)
    y = F.linear_forward(x, w, b[::-1].copy()[::-1], "sigmoid")
    assert_sum_close(y, R.linear_forward(x, w, b, "sigmoid"), *forward_terms(x, w, b), rtol=act_rtol("sigmoid", np.float64))
    got = F.linear_backward(np.asfortranarray(grad_out), x, w, layouts(y)["strided"], "sigmoid")
    for g, r, t, k in zip(got, R.linear_backward(grad_out, x, w, y, "sigmoid"), *backward_terms(grad_out, x, w, y, "sigmoid")):
        assert_sum_close(g, r, t, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_bias_and_skipped_gradients(rng, dtype):
    x, w, _, grad_out = make(rng, 7, 33, 31, dtype, with_bias=False)
    y = F.linear_forward(x, w, None, "relu")
    assert_sum_close(y, R.linear_forward(x, w, None, "relu"), *forward_terms(x, w, None))
    _, gw_full, gb_full = R.linear_backward(grad_out, x, w, y, "relu")
    (_, tw, tb), (_, kw, kb) = backward_terms(grad_out, x, w, y, "relu")
    for need_input, need_bias in [(False, True), (True, False), (False, False)]:
        gx, gw, gb = F.linear_backward(grad_out, x, w, y, "relu", need_input_grad=need_input, need_bias_grad=need_bias)
        assert (gx is None) == (not need_input) and (gb is None) == (not need_bias)
        assert_sum_close(gw, gw_full, tw, kw)
        if need_bias:
            assert_sum_close(gb, gb_full, tb, kb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["none", "leaky_relu"])
@pytest.mark.parametrize("given", ["both", "weight", "bias"])
@pytest.mark.parametrize("shape", [(33, 32, 129), (128, 784, 32)], ids=["gemm", "narrow-two-halves"])
def test_accumulate_into_given_gradients(rng, dtype, activation, given, shape):
    x, w, b, grad_out = make(rng, *shape, dtype)
    y = F.linear_forward(x, w, b, activation)
    _, gw, gb = R.linear_backward(grad_out, x, w, y, activation)
    (_, tw, tb), (_, k, _) = backward_terms(grad_out, x, w, y, activation)
    gw_acc = random_array(rng, gw.shape, dtype) if given != "bias" else None
    gb_acc = random_array(rng, gb.shape, dtype) if given != "weight" else None
    gw0 = None if gw_acc is None else gw_acc.copy()
    gb0 = None if gb_acc is None else gb_acc.copy()
    for step in (1, 2):  # accumulates over calls: step sums of k terms added to the given values
        _, rw, rb = F.linear_backward(grad_out, x, w, y, activation, grad_weight_out=gw_acc, grad_bias_out=gb_acc)
        if gw_acc is not None:
            assert rw is gw_acc
            assert_sum_close(gw_acc, gw0 + step * gw, np.abs(gw0) + step * tw, step * k + 1)
        else:
            assert_sum_close(rw, gw, tw, k)
        if gb_acc is not None:
            assert rb is gb_acc
            assert_sum_close(gb_acc, gb0 + step * gb, np.abs(gb0) + step * tb, step * k + 1)
        else:
            assert_sum_close(rb, gb, tb, k)


@pytest.mark.parametrize(
    "activation,n,n_in,n_out,need_input",
    [(a, 250, 1000, 200, True) for a in ACTIVATIONS]  # threads split y's rows; in > Eigen's k-block
    + [("relu", 16, 1000, 700, True), ("tanh", 9, 300, 1001, True)]  # threads split y's columns
    + [("none", 520, 64, 100, False)]  # grad_weight alone; N > Eigen's k-block
    + [("relu", 8, 3000, 49, True), ("none", 5, 12000, 20, True)]  # a last block of one column / row
    + [("sigmoid", 1, 2048, 600, True)]  # batch of one: matrix-vector products
    # few outputs (linear_narrow.h): rows split for the forward, grad_weight summed in two row halves
    + [("relu", 128, 784, 32, False), ("tanh", 61, 1000, 17, True), ("none", 300, 257, 64, True)]
    + [("relu", 1000, 300, 20, False)],  # halves of several row blocks (linear_narrow.h's kGradBlockRows)
)
def test_same_result_with_one_and_two_threads(rng, activation, n, n_in, n_out, need_input):
    # Bit for bit: the threads split the outputs, never a sum (GEMM blocks at Eigen's register
    # tiles, bias sums per column).
    x, w, b, grad_out = make(rng, n, n_in, n_out, np.float32)
    with num_threads(1):
        y1 = F.linear_forward(x, w, b, activation)
        g1 = F.linear_backward(grad_out, x, w, y1, activation, need_input_grad=need_input)
    with num_threads(2):
        y2 = F.linear_forward(x, w, b, activation)
        g2 = F.linear_backward(grad_out, x, w, y1, activation, need_input_grad=need_input)
    np.testing.assert_array_equal(y1, y2)
    for one, two in zip(g1, g2):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [63, 64, 65, 700])
def test_narrow_weight_grad_over_row_blocks_matches_reference(rng, dtype, n):
    # few outputs: grad_weight sums blocks of 64 rows, each block's sum added in order
    for n_out in (3, 10):
        x, w, b, grad_out = make(rng, n, 257, n_out, dtype)
        y = F.linear_forward(x, w, b, "relu")
        _, gw, gb = F.linear_backward(grad_out, x, w, y, "relu")
        _, rw, rb = R.linear_backward(grad_out, x, w, y, "relu")
        (_, tw, tb), (_, kw, kb) = backward_terms(grad_out, x, w, y, "relu")
        assert_sum_close(gw, rw, tw, kw, err_msg=f"n={n} out={n_out}")
        assert_sum_close(gb, rb, tb, kb, err_msg=f"n={n} out={n_out}")


def test_activations_at_the_extremes():
    x = np.array([[1.0], [-1.0], [np.nan]], np.float32)
    w = np.array([[50.0], [0.0], [-50.0]], np.float32)
    want_sigmoid = R.linear_forward(x, w, activation="sigmoid")
    np.testing.assert_allclose(F.linear_forward(x, w, activation="sigmoid"), want_sigmoid, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(F.linear_forward(x, w, activation="tanh"), np.tanh(x @ w.T), rtol=1e-6)
    assert np.isnan(F.linear_forward(x, w, activation="relu")[2]).all()  # NaN is not hidden as 0


def _args(**over):
    a = dict(x=np.ones((2, 3), np.float32), weight=np.ones((4, 3), np.float32), bias=np.ones(4, np.float32))
    a.update(over)
    return a


@pytest.mark.parametrize(
    "over,exc,match",
    [
        (dict(x=[[1.0]]), TypeError, r"\[linear_forward\] x must be a numpy.ndarray, got list"),
        (dict(x=np.ones((2, 3), np.int32)), TypeError, r"\[linear_forward\] x must be float32 or float64, got int32"),
        (dict(weight=np.ones((4, 3))), TypeError, r"\[linear_forward\] weight must be float32 like x, got float64"),
        (dict(bias=np.ones(4)), TypeError, r"\[linear_forward\] bias must be float32"),
        (dict(x=np.ones(3, np.float32)), ValueError, r"\[linear_forward\] x must be 2-D, got shape \(3,\)"),
        (dict(weight=np.ones((1, 4, 3), np.float32)), ValueError, r"\[linear_forward\] weight must be 2-D"),
        (dict(weight=np.ones((4, 2), np.float32)), ValueError, r"\[linear_forward\] x \(N, in\) and weight \(out, in\) do not match"),
        (dict(bias=np.ones(3, np.float32)), ValueError, r"\[linear_forward\] bias must have shape \(4,\), got \(3,\)"),
        (dict(bias=np.ones((4, 1), np.float32)), ValueError, r"\[linear_forward\] bias must have shape \(4,\)"),
        (dict(x=np.ones((0, 3), np.float32)), ValueError, r"\[linear_forward\] x is empty"),
        (dict(x=np.ones((2, 0), np.float32), weight=np.ones((4, 0), np.float32)), ValueError, r"x is empty"),
        (dict(activation="gelu"), ValueError, r"\[linear_forward\] activation must be one of 'none', 'relu', 'leaky_relu', 'sigmoid', 'tanh', got 'gelu'"),
        (dict(activation=None), TypeError, r"\[linear_forward\] activation must be a str"),
        (dict(negative_slope=float("nan")), ValueError, r"\[linear_forward\] negative_slope must be finite"),
        (dict(negative_slope=float("inf")), ValueError, r"\[linear_forward\] negative_slope must be finite"),
        (dict(negative_slope="0.1"), TypeError, r"\[linear_forward\] negative_slope must be a real number, got str"),
    ],
)
def test_forward_bad_input(over, exc, match):
    with pytest.raises(exc, match=match):
        F.linear_forward(**_args(**over))


def _bargs(**over):
    a = dict(
        grad_out=np.ones((2, 4), np.float32),
        x=np.ones((2, 3), np.float32),
        weight=np.ones((4, 3), np.float32),
        y=np.ones((2, 4), np.float32),
        activation="relu",
    )
    a.update(over)
    return a


@pytest.mark.parametrize(
    "over,exc,match",
    [
        (dict(grad_out=np.ones((2, 5), np.float32)), ValueError, r"\[linear_backward\] grad_out must have shape \(2, 4\), got \(2, 5\)"),
        (dict(grad_out=np.ones((2, 4))), TypeError, r"\[linear_backward\] grad_out must be float32"),
        (dict(grad_out=None), TypeError, r"\[linear_backward\] grad_out must be a numpy.ndarray"),
        (dict(y=None), ValueError, r"\[linear_backward\] y \(the output of linear_forward\) is required for activation 'relu'"),
        (dict(y=np.ones((4, 2), np.float32)), ValueError, r"\[linear_backward\] y must have shape \(2, 4\)"),
        (dict(y=np.ones((2, 4))), TypeError, r"\[linear_backward\] y must be float32"),
        (dict(x=np.ones((2, 3))), TypeError, r"\[linear_backward\] weight must be float64 like x, got float32"),
        (dict(x=np.ones((3, 3), np.float32)), ValueError, r"\[linear_backward\] grad_out must have shape \(3, 4\)"),
        (dict(weight=np.ones((4, 2), np.float32)), ValueError, r"\[linear_backward\] x \(N, in\) and weight \(out, in\) do not match"),
        (dict(activation="leaky_relu", negative_slope=0.0), ValueError, r"\[linear_backward\] leaky_relu backward needs negative_slope > 0"),
        (dict(activation="leaky_relu", negative_slope=-0.1), ValueError, r"negative_slope > 0"),
        (dict(negative_slope=float("nan")), ValueError, r"\[linear_backward\] negative_slope must be finite"),
        (dict(activation="softplus"), ValueError, r"\[linear_backward\] activation must be one of"),
        (dict(need_input_grad=1), TypeError, r"\[linear_backward\] need_input_grad must be a bool, got int"),
        (dict(need_bias_grad="yes"), TypeError, r"\[linear_backward\] need_bias_grad must be a bool, got str"),
        (dict(grad_weight_out=np.ones((3, 4), np.float32)), ValueError, r"\[linear_backward\] grad_weight_out must have shape \(4, 3\), got \(3, 4\)"),
        (dict(grad_weight_out=np.ones((4, 3))), TypeError, r"\[linear_backward\] grad_weight_out must be float32"),
        (dict(grad_weight_out=np.ones((3, 4), np.float32).T), ValueError, r"grad_weight_out is updated in place and must be C-contiguous"),
        (dict(grad_bias_out=np.ones(5, np.float32)), ValueError, r"\[linear_backward\] grad_bias_out must have shape \(4,\)"),
        (dict(grad_bias_out=np.ones(4, np.float32), need_bias_grad=False), ValueError, r"grad_bias_out is given but need_bias_grad is False"),
        (dict(grad_bias_out=[0.0] * 4), TypeError, r"\[linear_backward\] grad_bias_out must be a numpy.ndarray"),
    ],
)
def test_backward_bad_input(over, exc, match):
    with pytest.raises(exc, match=match):
        F.linear_backward(**_bargs(**over))


def test_accumulators_must_not_alias_inputs():
    w = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"\[linear_backward\] grad_weight_out must not share memory with an input"):
        F.linear_backward(**_bargs(weight=w, grad_weight_out=w))
    buf = np.ones(4 * 3 + 4, np.float32)
    with pytest.raises(ValueError, match=r"grad_bias_out must not share memory"):
        F.linear_backward(**_bargs(grad_weight_out=buf[:12].reshape(4, 3), grad_bias_out=buf[8:12]))
    ro = np.zeros((4, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"grad_weight_out is updated in place and must be writeable"):
        F.linear_backward(**_bargs(grad_weight_out=ro))


def test_numpy_scalars_and_bools_are_accepted(rng):
    x, w, b, grad_out = make(rng, 3, 4, 5, np.float64)
    y = F.linear_forward(x, w, b, "leaky_relu", np.float32(0.25))
    assert_sum_close(y, R.linear_forward(x, w, b, "leaky_relu", 0.25), *forward_terms(x, w, b))
    gx, _, gb = F.linear_backward(grad_out, x, w, y, "leaky_relu", np.float64(0.25), np.bool_(False), np.True_)
    assert gx is None and gb is not None
