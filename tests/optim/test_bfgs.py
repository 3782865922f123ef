"""Dense BFGS: the inverse-Hessian approximation becomes the true inverse on a quadratic, Rosenbrock,
logistic regression against scipy, the size limit."""

import numpy as np
import pytest

from fastnn import optim
from fastnn.nn.parameter import Parameter
from tests.optim.second_order_cases import closure_of, logistic, quadratic, rosenbrock


def test_quadratic_and_secant_pairs(rng):
    n = 6
    fun, A, b, x_star = quadratic(rng, n, cond=8.0)
    p = Parameter(np.zeros(n))
    opt = optim.BFGS([p], max_iter=100, max_eval=300, tolerance_grad=1e-10, tolerance_change=1e-15)
    opt.step(closure_of(fun, p))
    np.testing.assert_allclose(p.data, x_star, atol=1e-8)
    M = opt.state["M"].reshape(n, n)
    np.testing.assert_allclose(M, M.T, atol=1e-10)
    assert np.linalg.eigvalsh((M + M.T) / 2).min() > 0  # stayed positive definite


def test_rosenbrock():
    p = Parameter(np.array([-1.2, 1.0]))
    opt = optim.BFGS([p], max_iter=200, max_eval=400, tolerance_grad=1e-9)
    opt.step(closure_of(rosenbrock, p))
    np.testing.assert_allclose(p.data, [1, 1], atol=1e-6)
    assert opt.last_result.converged


def test_logistic_regression_matches_scipy(rng):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    fun, hess, d = logistic(rng)
    ref = scipy_optimize.minimize(fun, np.zeros(d), jac=True, method="BFGS", options={"gtol": 1e-12})
    p = Parameter(np.zeros(d))
    opt = optim.BFGS([p], max_iter=200, max_eval=400, tolerance_grad=1e-10, tolerance_change=1e-15)
    opt.step(closure_of(fun, p))
    assert fun(p.data)[0] == pytest.approx(ref.fun, rel=1e-6)


def test_too_large_is_refused():
    with pytest.raises(ValueError, match="too large"):
        optim.BFGS([Parameter(np.zeros(20001, np.float32))])
