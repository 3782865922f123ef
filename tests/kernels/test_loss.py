"""Loss kernels: C++ vs reference (float32/float64, odd sizes, label dtypes, probability targets,
reductions), layouts, finite differences on the C++ backward, threads, large logits, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, ODD_SIZES, assert_close, assert_gradient, assert_sum_close, layouts, num_threads, random_array, sum_bound
from tests.reference.test_loss import loss_terms

REDUCTIONS = ["mean", "sum"]
ELEMENTWISE = ["binary_cross_entropy_with_logits", "mse"]


def ce_target(rng, kind, n, c, dtype):
    if kind in ("int64", "int32"):
        return rng.integers(0, c, n).astype(kind)
    t = rng.uniform(0.0, 1.0, size=(n, c))
    if kind == "probs":
        t /= t.sum(axis=1, keepdims=True)
    return t.astype(dtype)  # "weights": rows not summing to one


def elementwise_target(rng, name, shape, dtype):
    low, high = (0.0, 1.0) if name == "binary_cross_entropy_with_logits" else (-2.0, 2.0)
    return random_array(rng, shape, dtype, low, high)


def check_all_three(name, a, t, g, reduction, dtype):
    """C++ forward, backward (upstream g) and forward_backward vs the reference."""
    want_loss = getattr(R, f"{name}_forward")(a, t, reduction)
    want_grad = getattr(R, f"{name}_backward")(a, t, g, reduction)
    loss = getattr(F, f"{name}_forward")(a, t, reduction)
    assert isinstance(loss, float)
    loss_t, loss_k, grad_t, grad_k = loss_terms(name, a, t, g, reduction)
    # the loss is a Python float, but the kernel may sum in the input's precision
    assert abs(loss - want_loss) <= sum_bound(loss_t, loss_k, dtype), (loss, want_loss)
    assert_sum_close(getattr(F, f"{name}_backward")(a, t, g, reduction), want_grad, grad_t, grad_k, dtype)
    loss2, grad2 = getattr(F, f"{name}_forward_backward")(a, t, reduction)
    assert abs(loss2 - want_loss) <= sum_bound(loss_t, loss_k, dtype), (loss2, want_loss)
    grad_t = loss_terms(name, a, t, 1.0, reduction)[2]
    assert_sum_close(grad2, getattr(R, f"{name}_backward")(a, t, 1.0, reduction), grad_t, grad_k, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["int64", "int32", "probs", "weights"])
@pytest.mark.parametrize("n,c", [(1, 1), (1, 7), (7, 31), (32, 32), (33, 129), (129, 33), (5, 1000)])
def test_cross_entropy_matches_reference(rng, dtype, reduction, kind, n, c):
    z = random_array(rng, (n, c), dtype, -4.0, 4.0)
    t = ce_target(rng, kind, n, c, dtype)
    check_all_three("cross_entropy", z, t, rng.normal(), reduction, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(n,) for n in ODD_SIZES] + [(1, 33), (7, 31), (3, 5, 129), (300, 41)])
def test_elementwise_losses_match_reference(rng, dtype, reduction, name, shape):
    a = random_array(rng, shape, dtype, -6.0, 6.0)
    t = elementwise_target(rng, name, shape, dtype)
    check_all_three(name, a, t, rng.normal(), reduction, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["F", "strided"])
def test_layouts(rng, dtype, layout):
    z = random_array(rng, (9, 7), dtype)
    probs = ce_target(rng, "probs", 9, 7, dtype)
    labels = rng.integers(0, 7, 18)[::2]  # strided labels too
    for name, a, t in [
        ("cross_entropy", layouts(z)[layout], labels),
        ("cross_entropy", layouts(z)[layout], layouts(probs)[layout]),
        ("binary_cross_entropy_with_logits", layouts(z)[layout], layouts(probs)[layout]),
        ("mse", layouts(z)[layout], layouts(probs)[layout]),
    ]:
        check_all_three(name, a, t, 0.7, "mean", dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["int64", "probs"])
def test_cross_entropy_cpp_gradient(rng, reduction, kind):
    z = rng.normal(size=(4, 5))
    t = ce_target(rng, kind, 4, 5, np.float64)
    g = rng.normal()
    analytic = F.cross_entropy_backward(z, t, g, reduction)
    assert_gradient(lambda: g * F.cross_entropy_forward(z, t, reduction), z, analytic)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_cpp_gradient(rng, reduction, name):
    a = rng.normal(scale=3.0, size=(3, 7))
    t = elementwise_target(rng, name, a.shape, np.float64)
    g = rng.normal()
    analytic = getattr(F, f"{name}_backward")(a, t, g, reduction)
    assert_gradient(lambda: g * getattr(F, f"{name}_forward")(a, t, reduction), a, analytic)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits_stay_finite(rng, dtype):
    z = random_array(rng, (16, 40), dtype, -1e4, 1e4)
    z[:, 3] = 1e4
    for t in (rng.integers(0, 40, 16), ce_target(rng, "probs", 16, 40, dtype)):
        loss, grad = F.cross_entropy_forward_backward(z, t)
        want_loss, want_grad = R.cross_entropy_forward_backward(z, t)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
        assert_close(grad, want_grad)
    t = elementwise_target(rng, "binary_cross_entropy_with_logits", z.shape, dtype)
    loss, grad = F.binary_cross_entropy_with_logits_forward_backward(z, t)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, R.binary_cross_entropy_with_logits_forward(z, t), rtol=1e-6)


@pytest.mark.parametrize("name,shape", [("cross_entropy", (512, 1000)), ("binary_cross_entropy_with_logits", (1024, 1031)),
                                        ("mse", (1024, 1031))])
def test_same_result_with_one_and_two_threads(rng, name, shape):
    a = random_array(rng, shape, np.float32)
    t = rng.integers(0, shape[1], shape[0]) if name == "cross_entropy" else elementwise_target(rng, name, shape, np.float32)
    fn = getattr(F, f"{name}_forward_backward")
    with num_threads(1):
        loss1, grad1 = fn(a, t)
    with num_threads(2):
        loss2, grad2 = fn(a, t)
    assert loss1 == loss2  # sums over data-determined blocks, not per-thread partial sums
    np.testing.assert_array_equal(grad1, grad2)
    np.testing.assert_allclose(loss2, getattr(R, f"{name}_forward")(a, t), rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["cross_entropy", *ELEMENTWISE])
def test_results_do_not_depend_on_memory_alignment(rng, dtype, name):
    """Same values at different addresses give the same bits (Eigen's scalar peeling would not)."""
    shape = (13, 301)  # odd row length: rows, and the fresh outputs, start at varying alignments
    a, t = random_array(rng, shape, dtype), ce_target(rng, "probs", *shape, dtype)
    targets = [rng.integers(0, shape[1], shape[0]), t] if name == "cross_entropy" else [t]
    fn = getattr(F, f"{name}_forward_backward")
    for target in targets:
        results = []
        for offset in range(16):
            buf = np.empty(a.size + 16, dtype)
            moved = buf[offset:offset + a.size].reshape(shape)
            moved[...] = a
            results.append(fn(moved, target))
        for loss, grad in results[1:]:
            assert loss == results[0][0]
            np.testing.assert_array_equal(grad, results[0][1])


# ---- bad input ----------------------------------------------------------------------------------

Z = np.zeros((3, 4), np.float32)
LABELS = np.array([0, 1, 3])


@pytest.mark.parametrize(
    "logits,target,exc,match",
    [
        (Z, np.array([0, 4, 1]), ValueError, r"target\[1\] = 4 is not a class index in \[0, 4\)"),
        (Z, np.array([0, 1, -2], np.int32), ValueError, r"target\[2\] = -2 is not a class index in \[0, 4\)"),
        (Z, np.array([0.0, 1.0, 2.0]), TypeError, r"target of shape \(3,\) holds class labels and must be int64 or int32, got float64"),
        (Z, np.array([0, 1, 2], np.uint8), TypeError, r"must be int64 or int32, got uint8"),
        (Z, np.array([0, 1], np.int64), ValueError, r"target must have shape \(3,\), got \(2,\)"),
        (Z, np.zeros((3, 5), np.float32), ValueError, r"target must have shape \(3, 4\), got \(3, 5\)"),
        (Z, np.zeros((3, 4)), TypeError, r"holds class probabilities and must be float32 like logits, got float64"),
        (Z, np.zeros((3, 4), np.int64), TypeError, r"must be float32 like logits, got int64"),
        (Z, np.zeros((3, 4, 1), np.float32), ValueError, r"target must be \(N,\) class labels or \(N, C\) class probabilities"),
        (Z, np.array([[0, 1, 0, 0]] * 2 + [[0, 0, np.nan, 1]], np.float32), ValueError,
         r"target \(class probabilities\) must be finite, got nan at \[2, 2\]"),
        (Z, np.array([[0, np.inf, 0, 0]] * 3, np.float32), ValueError, r"must be finite, got inf at \[0, 1\]"),
        (Z, [0, 1, 2], TypeError, r"target must be a numpy.ndarray, got list"),
        (np.zeros(4, np.float32), np.array([0]), ValueError, r"logits must be 2-D \(N, C\), got shape \(4,\)"),
        (np.zeros((2, 3, 4), np.float32), LABELS, ValueError, r"logits must be 2-D \(N, C\)"),
        (np.zeros((0, 4), np.float32), np.zeros(0, np.int64), ValueError, r"logits is empty"),
        (np.zeros((3, 4), np.int64), LABELS, TypeError, r"logits must be float32 or float64, got int64"),
        (Z.tolist(), LABELS, TypeError, r"logits must be a numpy.ndarray, got list"),
    ],
)
def test_cross_entropy_bad_input(logits, target, exc, match):
    for suffix in ("forward", "backward", "forward_backward"):
        with pytest.raises(exc, match=rf"^\[cross_entropy_{suffix}\] .*{match}"):
            getattr(F, f"cross_entropy_{suffix}")(logits, target)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_bad_input(name):
    fwd, bwd = getattr(F, f"{name}_forward"), getattr(F, f"{name}_backward")
    first = "logits" if name.startswith("binary") else "input"
    op = rf"\[{name}_forward\]"
    with pytest.raises(ValueError, match=op + rf" target must have the shape of {first} \(3, 4\), got \(4, 3\)"):
        fwd(Z, Z.T.copy())
    with pytest.raises(TypeError, match=op + rf" target must be float32 like {first}, got float64"):
        fwd(Z, Z.astype(np.float64))
    with pytest.raises(TypeError, match=op + rf" {first} must be float32 or float64, got int32"):
        fwd(Z.astype(np.int32), Z)
    with pytest.raises(ValueError, match=op + rf" {first} is empty"):
        fwd(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32))
    with pytest.raises(TypeError, match=op + r" target must be a numpy.ndarray, got float"):
        fwd(Z, 1.0)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match=rf"\[{name}_backward\] grad must be finite"):
            bwd(Z, Z, bad)
    with pytest.raises(TypeError, match=rf"\[{name}_backward\] grad must be a real number, got str"):
        bwd(Z, Z, "1")


@pytest.mark.parametrize("name", ["cross_entropy", *ELEMENTWISE])
def test_bad_reduction(name):
    t = LABELS if name == "cross_entropy" else Z
    with pytest.raises(ValueError, match=rf"\[{name}_forward\] reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        getattr(F, f"{name}_forward")(Z, t, "avg")
    with pytest.raises(TypeError, match=rf"\[{name}_forward_backward\] reduction must be a str, got NoneType"):
        getattr(F, f"{name}_forward_backward")(Z, t, None)
