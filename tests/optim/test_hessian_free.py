"""Hessian-free (truncated Newton-CG, Martens' damping and CG backtracking): a quadratic, logistic
regression against scipy, a small MLP, finite differences against an exact product."""

import numpy as np
import pytest

from fastnn import optim
from fastnn.nn.parameter import Parameter
from tests.optim.second_order_cases import closure_of, logistic, mlp_problem, quadratic


def test_quadratic_with_exact_product(rng):
    n = 10
    fun, A, b, x_star = quadratic(rng, n, cond=10.0)
    p = Parameter(np.zeros(n))
    opt = optim.HessianFree([p], hvp=lambda v: A @ v, damping=0.0, max_iter=20, tolerance_grad=1e-7,
                            tolerance_change=0.0)
    opt.step(closure_of(fun, p))
    np.testing.assert_allclose(p.data, x_star, atol=1e-6)
    # inexact Newton (forcing term min(0.5, sqrt|g|)): superlinear, a few outer iterations
    assert opt.last_result.converged and opt.last_result.iterations <= 10, opt.last_result


def test_logistic_regression_matches_scipy(rng):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    fun, hess, d = logistic(rng)
    ref = scipy_optimize.minimize(fun, np.zeros(d), jac=True, method="BFGS", options={"gtol": 1e-12})
    for hvp in (lambda v: hess(p.data) @ v, None):
        p = Parameter(np.zeros(d))
        opt = optim.HessianFree([p], hvp=hvp, max_iter=50, tolerance_grad=1e-10, tolerance_change=1e-15)
        opt.step(closure_of(fun, p))
        assert fun(p.data)[0] == pytest.approx(ref.fun, rel=1e-6)


def test_small_mlp_loss_falls_and_damping_adapts(rng):
    model, X, y, closure = mlp_problem(rng)
    opt = optim.HessianFree(model.parameters(), damping=1.0, max_iter=5)
    first = opt.step(closure)
    opt.step(closure)
    assert closure() < 0.7 * first
    assert opt.damping != 1.0 and opt.damping > 0


def test_bad_input():
    p = Parameter(np.zeros(3))
    with pytest.raises(TypeError, match="hvp"):
        optim.HessianFree([p], hvp="exact")
    opt = optim.HessianFree([p], hvp=lambda v: v[:2])

    def closure():
        p.grad[...] = p.data - 1
        return float(((p.data - 1) ** 2).sum() / 2)

    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        opt.step(closure)
    np.testing.assert_array_equal(p.data, 0)


def test_passes_per_iteration(rng):
    """An iteration costs its CG products and one evaluation when the model predicts the loss (a
    quadratic: ratio 1): no product for a cold start's 0 nor for the reduction ratio (the CG
    residual gives the model's value), no earlier CG iterate evaluated."""
    fun, A, b, x_star = quadratic(rng, 10, cond=10.0)
    p = Parameter(np.zeros(10))
    calls = []

    def hvp(v):
        calls.append(1)
        return A @ v

    opt = optim.HessianFree([p], hvp=hvp, damping=1.0, max_iter=1, max_cg=1, tolerance_grad=0.0,
                            tolerance_change=0.0)
    opt.step(closure_of(fun, p))
    assert (len(calls), opt.last_result.evaluations) == (1, 2)
    assert opt.damping == pytest.approx(2 / 3)  # ratio 1 > 3/4: the undamped model's value is right
    opt.step(closure_of(fun, p))  # warm start from 0.95 times the last step: one product more
    assert (len(calls), opt.last_result.evaluations) == (3, 2)
    assert fun(p.data)[0] < fun(np.zeros(10))[0]
