"""fastnn.optim.minimize: every method on Rosenbrock, a convex quadratic and L2-regularized
logistic regression (the same minimum as scipy), scipy's result fields, and bad input."""

import numpy as np
import pytest

from fastnn import optim
from tests.optim.second_order_cases import logistic, quadratic, rosenbrock, rosenbrock_hess

METHODS = ["lbfgs", "cg", "bfgs", "newton", "trust-ncg"]


@pytest.mark.parametrize("method", METHODS)
def test_rosenbrock(method):
    kw = {"hess": rosenbrock_hess} if method == "newton" else {}
    r = optim.minimize(rosenbrock, np.array([-1.2, 1.0]), method=method, tol=1e-8, maxiter=5000, **kw)
    assert r.success, r.message
    np.testing.assert_allclose(r.x, [1, 1], atol=1e-5)
    assert r.fun < 1e-10
    assert set(r) >= {"x", "fun", "jac", "nit", "nfev", "njev", "success", "status", "message"}
    assert r.status == 0 and r.nfev >= r.nit


@pytest.mark.parametrize("method", METHODS)
def test_logistic_regression_same_minimum_as_scipy(rng, method):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    fun, hess, d = logistic(rng)
    x0 = np.zeros(d)
    ref = scipy_optimize.minimize(fun, x0, jac=True, method="BFGS", options={"gtol": 1e-12})
    kw = {"hess": hess} if method in ("newton", "trust-ncg") else {}
    r = optim.minimize(fun, x0, method=method, tol=1e-10, **kw)
    assert r.success, r.message
    assert r.fun == pytest.approx(ref.fun, rel=1e-6)
    np.testing.assert_allclose(r.x, ref.x, rtol=1e-5, atol=1e-6)


def test_convex_quadratic_cg_within_n_and_newton_in_one(rng):
    n = 12
    fun, A, b, x_star = quadratic(rng, n, cond=20.0)
    r = optim.minimize(fun, np.zeros(n), method="cg", tol=1e-9, options={"restart": 1000})
    # exact line searches on a quadratic make nonlinear CG linear CG: n steps (plus rounding slack)
    assert r.success and r.nit <= n + 2, (r.nit, r.message)
    np.testing.assert_allclose(r.x, x_star, atol=1e-7)
    r = optim.minimize(fun, np.zeros(n), method="newton", hess=lambda x: A, tol=1e-9)
    assert r.success and r.nit == 1, (r.nit, r.message)
    np.testing.assert_allclose(r.x, x_star, atol=1e-9)


def test_float32_problem_stays_float32(rng):
    fun, A, b, x_star = quadratic(rng, 6, dtype=np.float32, cond=5.0)
    r = optim.minimize(fun, np.zeros(6, np.float32), method="lbfgs", tol=1e-3)
    assert r.x.dtype == np.float32 and r.success
    np.testing.assert_allclose(r.x, x_star, atol=1e-3)


def test_callback_sees_every_iteration_and_can_stop():
    seen = []
    r = optim.minimize(rosenbrock, np.array([-1.2, 1.0]), callback=lambda xk: seen.append(xk))
    assert len(seen) == r.nit and all(x.shape == (2,) for x in seen)
    r = optim.minimize(rosenbrock, np.array([-1.2, 1.0]), callback=lambda xk: True)
    assert r.nit == 1 and r.status == 4 and not r.success


def test_trust_ncg_hvp_and_finite_differences_agree(rng):
    fun, hess, d = logistic(rng)
    exact = optim.minimize(fun, np.zeros(d), method="trust-ncg", hvp=lambda x, v: hess(x) @ v, tol=1e-9)
    fd = optim.minimize(fun, np.zeros(d), method="trust-ncg", tol=1e-9)
    assert exact.success and fd.success and exact.nhev > 0
    np.testing.assert_allclose(exact.x, fd.x, atol=1e-6)


def test_bad_input():
    good = np.array([1.0, 2.0])
    with pytest.raises(TypeError, match="callable"):
        optim.minimize(3, good)
    with pytest.raises(ValueError, match="method"):
        optim.minimize(rosenbrock, good, method="nelder-mead")
    with pytest.raises(TypeError, match="real"):
        optim.minimize(rosenbrock, good.astype(complex))
    with pytest.raises(ValueError, match="1-D"):
        optim.minimize(rosenbrock, np.ones((2, 2)))
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        optim.minimize(lambda x: (1.0, np.ones(3)), good)
    with pytest.raises(TypeError, match="pair"):
        optim.minimize(lambda x: 1.0, good, options={"tolerance_change": 0.0})
    with pytest.raises(ValueError, match="unknown options"):
        optim.minimize(rosenbrock, good, options={"maxcor": 3})
    with pytest.raises(ValueError, match="history_size"):
        optim.minimize(rosenbrock, good, options={"history_size": 0})
    with pytest.raises(ValueError, match="NaN"):
        optim.minimize(rosenbrock, np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="maxiter"):
        optim.minimize(rosenbrock, good, maxiter=0)
