"""reference/batchnorm_rop.py and reference/loss_hessian.py against central differences of the
forward/backward references (float64): the specification checked by its definition
R{f} = d/dt f(x + t rx, gamma + t vgamma, beta + t vbeta)."""

import numpy as np
import pytest

from fastnn import reference as R

EPS = 1e-6


def _stats(x, training, rm, rv, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        return x.mean(axis=axes), 1 / np.sqrt(x.var(axis=axes) + eps)
    return rm, 1 / np.sqrt(rv + eps)


@pytest.mark.parametrize("shape", [(5, 3), (1, 2, 7), (3, 2, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_rop_reference_is_the_derivative(shape, training, affine):
    rng = np.random.default_rng(0)
    C = shape[1]
    x, rx = rng.standard_normal(shape), rng.standard_normal(shape)
    g, rg = rng.standard_normal(shape), rng.standard_normal(shape)
    w, b = (rng.uniform(0.5, 2, C), rng.standard_normal(C)) if affine else (None, None)
    vw, vb = (rng.standard_normal(C), rng.standard_normal(C)) if affine else (None, None)
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)

    def at(t):
        xt = x + t * rx
        wt = None if w is None else w + t * vw
        bt = None if b is None else b + t * vb
        y, mean, invstd = R.batch_norm_forward(xt, wt, bt, rm.copy(), rv.copy(), training, 0.1, 1e-5)
        if not training:
            mean, invstd = _stats(xt, False, rm, rv)
        back = R.batch_norm_backward(g + t * rg, xt, wt, mean, invstd, training)
        return y, back

    mean, invstd = _stats(x, training, rm, rv)
    ry, r_mean, r_cov = R.batch_norm_rop_forward(x, rx, mean, invstd, w, vw, vb, training)
    (yp, bp), (ym, bm) = at(EPS), at(-EPS)
    np.testing.assert_allclose(ry, (yp - ym) / (2 * EPS), rtol=1e-6, atol=1e-7)
    dx, rdx, dg, db, rdg, rdb = R.batch_norm_rop_backward(g, rg, x, rx, mean, invstd, w, vw, r_mean, r_cov, training)
    np.testing.assert_allclose(rdx, (bp[0] - bm[0]) / (2 * EPS), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx, at(0)[1][0], rtol=1e-12, atol=1e-12)
    if affine:
        np.testing.assert_allclose(rdg, (bp[1] - bm[1]) / (2 * EPS), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(rdb, (bp[2] - bm[2]) / (2 * EPS), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["labels", "probs", "bce", "mse"])
def test_loss_hessian_reference_is_the_derivative_of_the_gradient(kind):
    rng = np.random.default_rng(1)
    z, r = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    if kind == "labels":
        t = rng.integers(0, 4, 6)
        grad = lambda zz: R.cross_entropy_backward(zz, t, 1.0, "sum")
        hr = R.cross_entropy_hessian_vector(z, t, r, 0.5)
    elif kind == "probs":
        t = rng.random((6, 4)) * 2  # rows need not sum to 1: s_i scales the curvature
        grad = lambda zz: R.cross_entropy_backward(zz, t, 1.0, "sum")
        hr = R.cross_entropy_hessian_vector(z, t, r, 0.5)
    elif kind == "bce":
        t = rng.random((6, 4))
        grad = lambda zz: R.binary_cross_entropy_with_logits_backward(zz, t, 1.0, "sum")
        hr = R.bce_with_logits_hessian_vector(z, r, 0.5)
    else:
        t = rng.standard_normal((6, 4))
        grad = lambda zz: R.mse_backward(zz, t, 1.0, "sum")
        hr = R.mse_hessian_vector(r, 0.5)
    fd = 0.5 * (grad(z + EPS * r) - grad(z - EPS * r)) / (2 * EPS)
    np.testing.assert_allclose(hr, fd, rtol=1e-6, atol=1e-8)
