"""linear_loss_forward_backward (kernels/linear_loss.h via net/full_batch.h's linear_objective): a
linear model's loss and gradient in one pass over the data, against the reference (float32 and
float64, every loss, odd shapes, batch 1, with and without bias, sizes across the block and stripe
boundaries), finite differences, thread-count independence, bad input; and fit(optimizer=LBFGS)
on a single Linear (which takes this path) against the layers' path of the same objective."""

import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn import nn, optim
from fastnn import reference as R
from tests.conftest import DTYPES, assert_gradient, num_threads, random_array, sum_bound

CASES = [("cross_entropy", "labels"), ("cross_entropy", "probs"), ("bce_with_logits", "binary"), ("mse", "values")]


def problem(rng, n, n_in, n_out, dtype, kind, with_bias=True):
    x = random_array(rng, (n, n_in), dtype)
    w = random_array(rng, (n_out, n_in), dtype, -1 / np.sqrt(n_in), 1 / np.sqrt(n_in))
    b = random_array(rng, (n_out,), dtype) if with_bias else None
    if kind == "labels":
        y = rng.integers(0, n_out, n)
    elif kind == "probs":
        p = rng.random((n, n_out))
        y = (p / p.sum(1, keepdims=True)).astype(dtype)
    elif kind == "binary":
        y = (rng.random((n, n_out)) > 0.5).astype(dtype)
    else:
        y = rng.standard_normal((n, n_out)).astype(dtype)
    return x, y, w, b


# |d g / d z| summed over a row's outputs (cross-entropy: 2 p (1 - p) <= 1/2), times the reduction's scale
LIPSCHITZ = {"cross_entropy": 1.0, "mse": 2.0, "bce_with_logits": 0.25}


def gradient_bounds(x, y, w, b, loss, reduction, dtype):
    """Bounds of |computed - reference| for dW and db: the sums' rounding over the rows of the terms
    |g_ro x_rk| (sum_bound), plus what z's own rounding (c eps sqrt(in + 1) |x| |W|^T + |b|) moves
    g by, carried through x: g = p - t may be far smaller than the logits it comes from."""
    x64 = np.abs(x.astype(np.float64))
    _, g = {"cross_entropy": R.cross_entropy_forward_backward, "mse": R.mse_forward_backward,
            "bce_with_logits": R.binary_cross_entropy_with_logits_forward_backward}[loss](
        x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b),
        y.astype(np.float64) if y.dtype.kind == "f" else y, reduction)
    g = np.abs(np.asarray(g, np.float64))
    n, n_in = x.shape
    z_terms = x64 @ np.abs(w.astype(np.float64)).T + (0 if b is None else np.abs(b.astype(np.float64)))
    per = (1.0 / n if loss == "cross_entropy" else 1.0 / g.size) if reduction == "mean" else 1.0
    g_err = LIPSCHITZ[loss] * per * (sum_bound(z_terms.max(axis=1), n_in + 1, dtype) + 4 * np.finfo(dtype).eps)
    dw = sum_bound(g.T @ x64, n + 1, dtype) + g_err @ x64
    db = sum_bound(g.sum(axis=0), n + 1, dtype) + g_err.sum()
    return dw, db


def assert_within(got, want, bound, err_msg):
    assert got.shape == want.shape and got.dtype == want.dtype, err_msg
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bad = err > bound
    assert not bad.any(), f"{int(bad.sum())} of {err.size} beyond the bound (worst {float((err / bound).max()):.3g}x) {err_msg}"


def check_against_reference(rng, dtype, loss, kind, n, n_in, n_out, reduction, with_bias):
    x, y, w, b = problem(rng, n, n_in, n_out, dtype, kind, with_bias)
    shape = f"n={n} in={n_in} out={n_out} {reduction} bias={with_bias}"
    got = F.linear_loss_forward_backward(x, y, w, b, loss, reduction)
    want = R.linear_loss_forward_backward(x, y, w, b, loss, reduction)
    eps = np.finfo(dtype).eps
    per_row = 1.0 / n if reduction == "mean" else 1.0
    # the loss: a sum over n rows of values whose rounding is a few eps times |z| terms
    z_terms = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    bound = 50 * eps * np.sqrt(n_in + 1) * (z_terms.sum() + n) * per_row * np.sqrt(n)
    assert abs(got[0] - want[0]) <= bound + 1e-300, f"loss {got[0]} vs {want[0]} {shape}"
    bound_w, bound_b = gradient_bounds(x, y, w, b, loss, reduction, dtype)
    assert_within(got[1], want[1], bound_w, f"dW {shape}")
    if with_bias:
        assert_within(got[2], want[2], bound_b, f"db {shape}")
    else:
        assert got[2] is None
    if dtype == np.float64:
        assert got[3] == want[3], shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,kind", CASES)
@pytest.mark.parametrize("n", [1, 7, 63, 64, 65, 1100])  # one block, block edges, 16 stripes
def test_matches_reference(rng, dtype, loss, kind, n):
    # the last: exactly the most outputs this module's instruction set takes
    for n_in, n_out in [(1, 1), (7, 3), (33, 10), (129, 32), (20, 33), (9, F.linear_loss_max_outputs(dtype))]:
        if n_out > F.linear_loss_max_outputs(dtype) or (loss == "cross_entropy" and n_out == 1 and kind == "probs"):
            continue
        for reduction in ("mean", "sum"):
            for with_bias in (True, False):
                check_against_reference(rng, dtype, loss, kind, n, n_in, n_out, reduction, with_bias)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_output_count_up_to_a_packet(rng, dtype):
    """Outputs 1 .. packet + 1 and an odd count past two packets (the forward summed over the
    inputs when the outputs are not whole packets, in passes over chunks of inputs when a row is
    long: 700 inputs), inputs shorter than a packet, odd, and long; batch 1 and a block edge."""
    packet = F.linear_loss_max_outputs(dtype) // 4  # the build's SIMD width in `dtype` values
    outs = list(range(1, packet + 2)) + [2 * packet + 3]
    for n_out in outs:
        for n_in in (packet - 1 or 1, 2 * packet + 3, 700):
            for n in (1, 65):
                loss, kind = ("cross_entropy", "labels") if n_out > 1 else ("mse", "values")
                check_against_reference(rng, dtype, loss, kind, n, n_in, n_out, "mean", n_out % 2 == 1)
    check_against_reference(rng, dtype, "mse", "values", 70, 4 * 1024 + 5, 1, "sum", True)  # one output, long rows


@pytest.mark.parametrize("loss,kind", CASES)
def test_gradient_matches_finite_differences(rng, loss, kind):
    x, y, w, b = problem(rng, 150, 9, 4, np.float64, kind)
    _, dw, db, _ = F.linear_loss_forward_backward(x, y, w, b, loss)
    assert_gradient(lambda: F.linear_loss_forward_backward(x, y, w, b, loss)[0], w, dw)
    assert_gradient(lambda: F.linear_loss_forward_backward(x, y, w, b, loss)[0], b, db)


def test_long_rows_gradient_matches_finite_differences(rng):
    """3 outputs (never whole float64 packets) of 700 inputs: the forward's passes over input chunks."""
    x, y, w, b = problem(rng, 70, 700, 3, np.float64, "labels")
    _, dw, db, _ = F.linear_loss_forward_backward(x, y, w, b)
    assert_gradient(lambda: F.linear_loss_forward_backward(x, y, w, b)[0], w, dw)
    assert_gradient(lambda: F.linear_loss_forward_backward(x, y, w, b)[0], b, db)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_do_not_change_bits(rng, dtype):
    x, y, w, b = problem(rng, 3000, 784, min(10, F.linear_loss_max_outputs(dtype)), dtype, "labels")
    with num_threads(1):
        one = F.linear_loss_forward_backward(x, y, w, b)
    with num_threads(2):
        two = F.linear_loss_forward_backward(x, y, w, b)
    assert one[0] == two[0] and one[3] == two[3]
    np.testing.assert_array_equal(one[1], two[1])
    np.testing.assert_array_equal(one[2], two[2])


def test_bad_input(rng):
    x, y, w, b = problem(rng, 20, 5, 3, np.float32, "labels")
    with pytest.raises(ValueError, match="not a class index"):
        F.linear_loss_forward_backward(x, np.full(20, 3), w, b)
    with pytest.raises(ValueError, match="weight"):
        F.linear_loss_forward_backward(x, y, w[:, :4], b)
    with pytest.raises(ValueError, match="bias"):
        F.linear_loss_forward_backward(x, y, w, b[:2])
    with pytest.raises(TypeError, match="float32"):
        F.linear_loss_forward_backward(x, y, w.astype(np.float64), b)
    with pytest.raises(ValueError, match="values per sample"):
        F.linear_loss_forward_backward(x, np.zeros((20, 2), np.float32), w, b, "mse")
    with pytest.raises(ValueError, match="loss"):
        F.linear_loss_forward_backward(x, y, w, b, "huber")
    too_many = F.linear_loss_max_outputs(np.float32) + 1
    with pytest.raises(ValueError, match=f"at most {too_many - 1} outputs, got {too_many}"):
        F.linear_loss_forward_backward(x, y, random_array(rng, (too_many, 5), np.float32), None)
    with pytest.raises(ValueError, match="dtype"):
        F.linear_loss_max_outputs(np.int32)


def test_max_outputs_follows_the_simd_width():
    """Four registers of outputs: twice as many float32 as float64, at least SSE2's 16 / 8."""
    f32, f64 = F.linear_loss_max_outputs(np.float32), F.linear_loss_max_outputs(np.float64)
    assert f32 == 2 * f64 and f32 in (16, 32, 64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_lbfgs_on_a_linear_model_matches_the_layers_path(dtype):
    """Sequential(Linear) takes the one-pass objective; Sequential(Linear, Identity) the layers'
    forward and backward: the same L-BFGS run, to rounding."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((700, 30)).astype(dtype)
    y = rng.integers(0, 5, 700)
    results = []
    for extra in ([], [nn.Identity(dtype=dtype)]):
        m = nn.Sequential(nn.Linear(30, 5, dtype=dtype), *extra)
        m.flat_parameters()[...] = 0
        opt = optim.LBFGS(m.parameters(), max_iter=15, history_size=5, line_search_fn="strong_wolfe",
                          weight_decay=1e-3)
        hist = fastnn.fit(m, X, y, optimizer=opt, epochs=1, verbose=0)
        results.append((hist.history["loss"][0], m.flat_parameters().copy(), hist.history["accuracy"][0]))
    (l1, p1, a1), (l2, p2, a2) = results
    tol = 1e-4 if dtype == np.float32 else 1e-9
    assert abs(l1 - l2) <= tol * abs(l2)
    np.testing.assert_allclose(p1, p2, rtol=0, atol=tol * 100 * (1 + np.abs(p2).max()))
    assert abs(a1 - a2) <= (0.01 if dtype == np.float32 else 0)
