"""Shared test vocabulary: dtypes and their tolerances, odd sizes, comparison and gradient helpers."""

import contextlib

import numpy as np
import pytest

import fastnn

DTYPES = [np.float32, np.float64]

# C++ vs reference for elementwise results (activations, dropout, optimizer updates): relative to
# the element, which is sound where nothing is summed. Sums use assert_sum_close below.
TOL = {
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-10, atol=1e-12),
}

# Around SIMD widths (16 floats / 8 doubles per AVX-512 register) and a batch of one.
ODD_SIZES = [1, 7, 31, 32, 33, 129]


def tol(dtype, scale=1.0):
    t = TOL[np.dtype(dtype).type]
    return dict(rtol=t["rtol"] * scale, atol=t["atol"] * scale)


def assert_close(actual, expected, dtype=None, scale=1.0, err_msg=""):
    """Same shape and dtype as expected, values within the dtype's tolerance (times scale)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape} {err_msg}"
    dtype = np.dtype(dtype or expected.dtype)
    assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype} {err_msg}"
    np.testing.assert_allclose(actual, expected, err_msg=err_msg, **tol(dtype, scale))


# Sums (matmul, linear, reductions) are compared with a bound scaled to their terms, never to the
# result: an element whose terms nearly cancel is small, while its rounding error is not.
#
# For s = sum_i t_i (k terms, dot products included) computed in any order, the rounding error is
# at most (k-1)u sum_i |t_i| (u = eps/2, Wilkinson; k u with FMA). That worst case needs every
# rounding to go the same way by the maximum. Rounding errors of random data behave as independent,
# mean-zero variables, and then |error| <= lambda sqrt(k) u sum_i |t_i| fails with probability at
# most 2k exp(-lambda^2 (1-u)^2 / 2) (Higham & Mary, "A new approach to probabilistic rounding error
# analysis", SIAM J. Sci. Comput. 41(5), 2019, Thm 3.1). Both the kernel and its reference round,
# so their difference is bounded by 2 lambda sqrt(k) u sum|t_i| = lambda sqrt(k) eps sum|t_i|.
# SUM_C is that lambda: 10 makes the failure probability < 1e-17 per element for k up to 10^4 (any
# CPU, any summation order: blocked, SIMD lanes, pairwise or sequential all satisfy it). A missing
# or repeated term (|t_i| ~ sum|t| / k) stays 1 / (c eps k^1.5) times the bound: 38 times in float32
# at k = 784, above 1 up to k ~ 9000, and 10^8 times in float64. The worst case bound k eps would
# lose such a term in float32 sums of more than ~2900 terms.
SUM_C = 10.0


def sum_bound(terms, k, dtype, c=SUM_C):
    """Largest |computed - reference| for sums of k terms whose absolute values add up to terms."""
    info = np.finfo(dtype)
    # the floor covers gradual underflow only: it is the smallest normal number, not a tolerance
    return c * float(info.eps) * np.sqrt(k) * np.abs(np.asarray(terms, np.float64)) + float(info.smallest_normal)


def assert_sum_close(actual, expected, terms, k, dtype=None, c=SUM_C, rtol=0.0, err_msg=""):
    """Same shape and dtype as expected; elementwise |actual - expected| <= c eps sqrt(k) terms
    (sum_bound) + rtol |expected|.

    terms[i] is sum |t| over the k terms summed into element i (broadcastable to expected). For a
    multilinear kernel (matmul, linear with no activation, its gradients, sums over the batch) it is
    the reference evaluated on the inputs' absolute values: |A| |B|, |x| |W|^T + |b|, sum |g|.
    k counts the terms rounded into an element (a bias is one more). rtol is for an elementwise
    function applied to the sum (an activation, exp, sqrt): a few ulps of the result itself, which
    cannot cancel; an activation's slope is at most 1, so it does not enlarge the sum's error.
    NaN must match NaN."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape} {err_msg}"
    dtype = np.dtype(dtype or expected.dtype)
    assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype} {err_msg}"
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    bound = np.broadcast_to(sum_bound(terms, k, dtype, c) + rtol * np.abs(e), e.shape)
    err = np.abs(a - e)
    bad = ~((err <= bound) | (np.isnan(a) & np.isnan(e)) | (a == e))
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / bound, -1)), e.shape) if e.ndim else ()
        raise AssertionError(
            f"{int(bad.sum())} of {e.size} elements differ by more than c eps sqrt(k) terms "
            f"(c={c}, k={k}, eps={np.finfo(dtype).eps:.3g}, rtol={rtol}) {err_msg}\n"
            f"worst at {i}: actual {a[i]!r}, expected {e[i]!r}, |diff| {err[i]:.3g} > bound {bound[i]:.3g} "
            f"(terms {np.broadcast_to(np.asarray(terms, np.float64), e.shape)[i]:.3g})"
        )


def matmul_terms(a, b):
    """sum_k |a_ik| |b_kj|: the terms of a @ b (and of batched a @ b)."""
    return np.abs(np.asarray(a, np.float64)) @ np.abs(np.asarray(b, np.float64))


def network_terms(model, x):
    """Terms of an eval-mode Sequential's output (Linear, BatchNorm in eval, pointwise activations
    of slope <= 1, Dropout) and the k to pass with them.

    |.| is carried through the layers (|x| |W|^T + |b|; BN's |scale| t + |beta| + |mean scale|);
    the activations pass terms through (their slope is at most 1, so they do not grow an error).
    A layer of fan-in K adds c eps sqrt(K) terms and passes earlier errors on through |W| <= the
    terms, so the output's bound is c eps (sum_i sqrt(K_i)) terms: k = (sum_i sqrt(K_i))^2."""
    from fastnn import nn

    t = np.abs(np.asarray(x, np.float64))
    root_k = 0.0
    for layer in model:
        if isinstance(layer, nn.Linear):
            w = np.abs(np.asarray(layer.weight, np.float64))
            t = t @ w.T + (0 if layer.bias is None else np.abs(np.asarray(layer.bias, np.float64)))
            root_k += np.sqrt(w.shape[1] + 1)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            scale = 1 / np.sqrt(np.asarray(layer.running_var, np.float64) + layer.eps)
            if layer.weight is not None:
                scale = scale * np.abs(np.asarray(layer.weight, np.float64))
            shift = np.abs(np.asarray(layer.running_mean, np.float64)) * scale
            if layer.bias is not None:
                shift = shift + np.abs(np.asarray(layer.bias, np.float64))
            t = scale * t + shift
            root_k += np.sqrt(3)
        elif not isinstance(layer, (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity)):
            raise TypeError(f"network_terms: no rule for {type(layer).__name__}")
    return t, root_k**2


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every element of float64 array x (in place)."""
    assert x.dtype == np.float64
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def assert_gradient(f, x, analytic, eps=1e-6, rtol=1e-6, atol=1e-8):
    """analytic must match central differences of the scalar f() with respect to x.

    The differences carry f's rounding divided by eps (~ the size of f's terms * 1e-10 at eps 1e-6),
    the same for every element, so an element that cancels to near zero cannot meet rtol alone: the
    absolute tolerance is also scaled to the largest gradient element (rtol * max |numeric|). A wrong
    gradient is off by the size of its terms, far above that.
    """
    numeric = numerical_gradient(f, x, eps)
    scale = float(np.max(np.abs(numeric))) if numeric.size else 0.0
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=max(atol, rtol * scale))


def assert_model_gradient(model, x, w, rtol=1e-5, atol=1e-7):
    """model.backward(w) must give the gradients of loss = sum(w * model(x)) (w: a random upstream
    gradient) with respect to x and to every parameter, by central differences (float64 models)."""

    def loss():
        return float(np.sum(w * model(x)))

    model.zero_grad()
    model(x)
    dx = model.backward(w)
    assert_gradient(loss, x, dx, rtol=rtol, atol=atol)
    for p in model.parameters():
        assert_gradient(loss, p.data, p.grad.copy(), rtol=rtol, atol=atol)



def assert_matches_torch(model, tmodel, x, g, rtol, atol, grad_atol, state=False):
    """In training and then eval mode, model (float64) and tmodel, its torch twin holding the same
    weights, give the same output, input gradient and parameter gradients (rtol 1e-9, atol
    grad_atol) for the upstream gradient g; with state, also the same state_dict (running
    statistics updated alike). The caller has imported torch (pytest.importorskip)."""
    import torch as th

    def close(actual, expected, rtol, atol, err_msg=""):
        # atol also grows with the array's largest magnitude (a stand-in for the terms summed), so an
        # element that cancels to ~0 is not held to an absolute 1e-12 when the sums it came from are large.
        scale = float(np.abs(expected).max(initial=0.0))
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol + 1e3 * np.finfo(np.float64).eps * scale,
                                   err_msg=err_msg)

    tparams = dict(tmodel.named_parameters())
    for training in (True, False):
        model.train(training)
        tmodel.train(training)
        model.zero_grad()
        y = model(x)
        dx = model.backward(g)
        tx = th.tensor(x, requires_grad=True)
        ty = tmodel(tx)
        ty.backward(th.from_numpy(g))
        close(y, ty.detach().numpy(), rtol, atol)
        close(dx, tx.grad.numpy(), rtol, atol)
        for name, p in model.named_parameters():
            close(p.grad, tparams[name].grad.numpy(), 1e-9, grad_atol, err_msg=name)
            tparams[name].grad = None
        if state:
            for name, v in model.state_dict().items():
                close(v, tmodel.state_dict()[name].numpy(), 1e-10, 1e-12, err_msg=name)

@contextlib.contextmanager
def num_threads(n):
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(n)
    try:
        yield
    finally:
        fastnn.set_num_threads(old)


def random_array(rng, shape, dtype, low=-2.0, high=2.0):
    return rng.uniform(low, high, size=shape).astype(dtype)


def layouts(a):
    """The same values as C order, Fortran order, and a strided (every other row) view."""
    f = np.asfortranarray(a)
    padded = np.zeros((a.shape[0] * 2,) + a.shape[1:], dtype=a.dtype)
    padded[::2] = a
    return {"C": a, "F": f, "strided": padded[::2]}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


try:  # torch is an optional, independent oracle
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

requires_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
