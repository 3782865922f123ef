"""The general loss kernels (PyTorch's options, reduction "none", NLL, L1, smooth L1, Huber): C++
vs the reference in float32 and float64, odd sizes and a batch of one, finite differences on the
C++ backward in float64, thread-count independence, and bad options."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, assert_gradient, assert_sum_close, num_threads, sum_bound
from tests.reference.test_loss_options import ELEMENTWISE, elementwise_case, scalar, upstream

REDUCTIONS = ["mean", "sum", "none"]
SIZES = [(1, 3), (7, 5), (33, 10), (129, 40)]


def ce_options(rng, n, c, target_kind):
    w = rng.uniform(0.2, 2.0, c)
    if target_kind == "probs":
        return rng.dirichlet(np.ones(c), n), {"weight": w, "label_smoothing": 0.1}
    y = rng.integers(0, c, n)
    if target_kind == "ignore_a_class":  # no other option: ignoring a valid class must leave the fast kernel
        y[0] = c - 1
        return y, {"ignore_index": c - 1 if n > 1 else c}  # a batch of one: not every row ignored
    if n > 1:
        y[n // 2] = -100  # ignored
    return y, {"weight": w, "label_smoothing": 0.2} if target_kind == "labels" else {"label_smoothing": 0.05}


def ce_terms(z, t, opts, g, reduction):
    """(loss terms, k, gradient terms, k) of the reference's formulas (see its _ce_parts): the row
    loss lse sum q - sum q z and the gradient softmax sum q - q cancel as the target class dominates."""
    t = t.astype(np.float64) if t.ndim == 2 else t
    q, divisor = R.loss._ce_parts(z, t, "terms", opts.get("weight"), opts.get("label_smoothing", 0.0),
                                  opts.get("ignore_index", -100))
    scale = 1.0 / divisor if reduction == "mean" else 1.0
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) + z.max(1, keepdims=True)
    row = (np.abs(q) * (np.abs(z) + np.abs(lse))).sum(1)
    p = np.exp(z - lse)
    g = np.abs(np.broadcast_to(g, (z.shape[0],)))[:, None]
    grad_terms = (p * np.abs(q).sum(1, keepdims=True) + np.abs(q)) * g * scale
    loss_terms = row if reduction == "none" else row.sum() * scale
    return loss_terms, 2 * z.shape[1] + 2, grad_terms, z.shape[1] + 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "labels_smoothing", "ignore_a_class", "probs"])
@pytest.mark.parametrize("n,c", SIZES)
def test_cross_entropy_options_match_reference(rng, dtype, reduction, target_kind, n, c):
    z64 = rng.normal(0, 3, (n, c))
    z = z64.astype(dtype)
    t, opts = ce_options(rng, n, c, target_kind)
    if target_kind == "probs":
        t = t.astype(dtype)
    g = upstream(rng, reduction, (n,))
    want_loss = R.cross_entropy_forward(z, t, reduction, **opts)
    want_grad = R.cross_entropy_backward(z, t, g, reduction, **opts)
    loss_t, loss_k, grad_t, grad_k = ce_terms(z.astype(np.float64), t, opts, g, reduction)
    loss = F.cross_entropy_forward(z, t, reduction, **opts)
    if reduction == "none":
        assert loss.dtype == np.float64 and loss.shape == (n,)
    assert np.all(np.abs(np.asarray(loss) - want_loss) <= sum_bound(loss_t, loss_k, dtype))  # exp in the input's dtype
    assert_sum_close(F.cross_entropy_backward(z, t, g, reduction, **opts), want_grad, grad_t, grad_k, dtype)
    both_loss, both_grad = F.cross_entropy_forward_backward(z, t, reduction, **opts)
    np.testing.assert_array_equal(both_loss, loss)
    want_grad1 = R.cross_entropy_backward(z, t, 1.0, reduction, **opts)
    assert_sum_close(both_grad, want_grad1, *ce_terms(z.astype(np.float64), t, opts, 1.0, reduction)[2:], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n,c", SIZES)
def test_nll_matches_reference(rng, dtype, reduction, n, c):
    x = rng.normal(0, 2, (n, c)).astype(dtype)
    y = rng.integers(0, c, n)
    if n > 1:
        y[0] = 1  # ignored
    opts = {"weight": rng.uniform(0.2, 2.0, c), "ignore_index": 1}
    g = upstream(rng, reduction, (n,))
    want = R.nll_forward(x, y, reduction, **opts)
    # one product per row, then the sum: its terms are the absolute values
    terms = np.abs(R.nll_forward(np.abs(x), y, reduction, **opts))
    assert np.all(np.abs(np.asarray(F.nll_forward(x, y, reduction, **opts)) - want) <= sum_bound(terms, n + 1, dtype))
    got = F.nll_backward(x, y, g, reduction, **opts)
    want_g = R.nll_backward(x, y, g, reduction, **opts)
    assert_sum_close(got, want_g, np.abs(want_g), 2, dtype)
    loss, grad = F.nll_forward_backward(x, y, reduction, **opts)
    np.testing.assert_array_equal(loss, F.nll_forward(x, y, reduction, **opts))


def elementwise_terms(name, x, t, kw, g, reduction):
    """Loss terms: BCE's max(z, 0) - z t + log(1 + e^-|z|) (+ the pos_weight term) cancels, the
    regression losses are sums of non-negative elements; gradient terms: the parts of one element."""
    x, t = x.astype(np.float64), t.astype(np.float64)
    w = np.broadcast_to(kw.get("weight", 1.0), x.shape)
    g = np.abs(np.broadcast_to(g, x.shape))
    scale = 1.0 / x.size if reduction == "mean" else 1.0
    if name.startswith("binary"):
        p = np.abs(np.broadcast_to(kw.get("pos_weight", 1.0), x.shape) - 1)
        sp = np.log1p(np.exp(-np.abs(x)))
        elem = (np.abs(x) * (1 + t) + sp + p * t * (sp + np.abs(x))) * w
        s = 1 / (1 + np.exp(-x))
        grad = (s + t + p * t * (1 - s)) * w
    else:
        elem = np.asarray(R.loss._elementwise(name, x, t, kw.get("beta", kw.get("delta", 1.0)))[0]) * w
        grad = np.abs(R.loss._elementwise(name, x, t, kw.get("beta", kw.get("delta", 1.0)))[1]) * w + np.abs(x - t) * w
    loss = elem if reduction == "none" else elem.sum() * scale
    return loss, 8 + (0 if reduction == "none" else x.size), grad * g * scale, 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,opts", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (33, 17)])
def test_elementwise_options_match_reference(rng, dtype, reduction, name, opts, shape):
    x, t, kw = elementwise_case(rng, name, opts, shape)
    x, t = x.astype(dtype), t.astype(dtype)
    g = upstream(rng, reduction, shape)
    fwd, bwd, both = (getattr(F, f"{name}_{s}") for s in ("forward", "backward", "forward_backward"))
    want_loss = getattr(R, f"{name}_forward")(x, t, reduction, **kw)
    want_grad = getattr(R, f"{name}_backward")(x, t, g, reduction, **kw)
    loss_t, loss_k, grad_t, grad_k = elementwise_terms(name, x, t, kw, g, reduction)
    loss = fwd(x, t, reduction, **kw)
    assert np.all(np.abs(np.asarray(loss) - want_loss) <= sum_bound(loss_t, loss_k, dtype))  # exp in the input's dtype
    assert_sum_close(bwd(x, t, g, reduction, **kw), want_grad, grad_t, grad_k, dtype)
    loss2, grad2 = both(x, t, reduction, **kw)
    np.testing.assert_array_equal(loss2, loss)
    assert grad2.dtype == dtype and grad2.shape == shape


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cpp_backward_finite_differences(rng, reduction):
    z = rng.normal(0, 2, (6, 4))
    y = np.array([0, 3, -100, 1, 2, 2])
    opts = {"weight": rng.uniform(0.5, 2, 4), "label_smoothing": 0.15}
    g = upstream(rng, reduction, (6,))
    assert_gradient(lambda: scalar(F.cross_entropy_forward(z, y, reduction, **opts), g), z,
                    F.cross_entropy_backward(z, y, g, reduction, **opts))
    assert_gradient(lambda: scalar(F.nll_forward(z, y, reduction, ignore_index=-100), g), z,
                    F.nll_backward(z, y, g, reduction))
    for name, o in ELEMENTWISE:
        x, t, kw = elementwise_case(rng, name, o)
        ge = upstream(rng, reduction, x.shape)
        assert_gradient(lambda: scalar(getattr(F, f"{name}_forward")(x, t, reduction, **kw), ge), x,
                        getattr(F, f"{name}_backward")(x, t, ge, reduction, **kw))


def test_results_do_not_depend_on_the_thread_count(rng):
    z = rng.normal(0, 2, (3000, 12)).astype(np.float32)
    y = rng.integers(0, 12, 3000)
    opts = {"weight": rng.uniform(0.5, 2, 12), "label_smoothing": 0.1}
    x = rng.normal(0, 1, (3000, 7)).astype(np.float32)
    t = rng.uniform(0, 1, (3000, 7)).astype(np.float32)
    runs = []
    for threads in (1, 2):
        with num_threads(threads):
            runs.append((F.cross_entropy_forward_backward(z, y, **opts),
                         F.binary_cross_entropy_with_logits_forward_backward(x, t, pos_weight=np.arange(1.0, 8.0)),
                         F.huber_forward_backward(x, t, delta=0.3)))
    for a, b in zip(*runs):
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])


def test_all_rows_ignored_is_nan_as_torch():
    z = np.zeros((2, 3))
    assert np.isnan(F.cross_entropy_forward(z, np.array([-100, -100])))
    assert F.cross_entropy_forward(z, np.array([-100, -100]), "sum") == 0.0


Z = np.zeros((3, 4), np.float32)
Y = np.array([0, 1, 3])


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: F.cross_entropy_forward(Z, Y, weight=np.ones(3)), ValueError,
         r"\[cross_entropy_forward\] weight of shape \(3,\) does not broadcast to \(4,\)"),
        (lambda: F.cross_entropy_forward(Z, Y, weight=np.ones((2, 4))), ValueError, r"does not broadcast"),
        (lambda: F.cross_entropy_forward(Z, Y, weight=[1, 2, 3, 4]), TypeError, r"weight must be a numpy.ndarray, got list"),
        (lambda: F.cross_entropy_forward(Z, Y, weight=np.array([1, np.nan, 1, 1])), ValueError, r"weight must be finite"),
        (lambda: F.cross_entropy_forward(Z, Y, label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0, 1\]"),
        (lambda: F.cross_entropy_forward(Z, Y, label_smoothing="a"), TypeError, r"must be a real number, got str"),
        (lambda: F.cross_entropy_forward(Z, Y, ignore_index=1.5), TypeError, r"ignore_index must be an int, got float"),
        (lambda: F.cross_entropy_forward(Z, np.array([0, 1, 7])), ValueError,
         r"target\[2\] = 7 is not a class index in \[0, 4\) \(nor ignore_index -100\)"),
        (lambda: F.nll_forward(Z, Z), ValueError, r"\[nll_forward\] target must be \(N,\) class labels"),
        (lambda: F.binary_cross_entropy_with_logits_forward(Z, Z, pos_weight=np.ones(3)), ValueError,
         r"pos_weight of shape \(3,\) does not broadcast to \(4,\)"),
        (lambda: F.huber_forward(Z, Z, delta=0.0), ValueError, r"\[huber_forward\] delta must be > 0"),
        (lambda: F.smooth_l1_forward(Z, Z, beta=-1.0), ValueError, r"\[smooth_l1_forward\] beta must be >= 0"),
        (lambda: F.cross_entropy_backward(Z, Y, np.ones(3), "mean"), TypeError,
         r"\[cross_entropy_backward\] grad must be a real number"),
        (lambda: F.cross_entropy_backward(Z, Y, np.ones(4), "none"), ValueError,
         r"grad must have the shape of the losses \(3,\), got \(4,\)"),
        (lambda: F.l1_backward(Z, Z, np.ones(3), "none"), ValueError, r"grad must have the shape of the losses \(3, 4\)"),
    ],
)
def test_bad_options(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_unknown_option_names_the_options():
    from fastnn._config import _C

    with pytest.raises(TypeError, match=r"\[mse_forward\] unexpected option 'weight'"):
        _C.mse_forward(Z, Z, "mean", weight=None)
    with pytest.raises(TypeError, match=r"unexpected option 'pos_weight' \(options: weight, label_smoothing, ignore_index\)"):
        _C.cross_entropy_forward(Z, Y, "mean", pos_weight=None)
