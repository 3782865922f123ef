"""Nonlinear conjugate gradient as an optimizer: PR+ and FR, a convex quadratic in <= n
iterations, Rosenbrock, a small MLP, restarts, a raising closure, bad input."""

import numpy as np
import pytest

from fastnn import optim
from fastnn.nn.parameter import Parameter
from tests.conftest import DTYPES
from tests.optim.second_order_cases import closure_of, mlp_problem, quadratic, rosenbrock


@pytest.mark.parametrize("formula", ["pr+", "fr"])
def test_quadratic_within_n_iterations(rng, formula):
    n = 10
    fun, A, b, x_star = quadratic(rng, n, cond=10.0)
    p = Parameter(np.zeros(n))
    opt = optim.ConjugateGradient([p], formula=formula, max_iter=n + 2, max_eval=20 * n, restart=100,
                                  tolerance_grad=1e-8)
    opt.step(closure_of(fun, p))
    assert opt.last_result.converged and opt.last_result.iterations <= n + 2, opt.last_result
    np.testing.assert_allclose(p.data, x_star, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rosenbrock(dtype):
    p = Parameter(np.array([-1.2, 1.0], dtype=dtype))
    opt = optim.ConjugateGradient([p], max_iter=2000, max_eval=10000,
                                  tolerance_grad=1e-3 if dtype == np.float32 else 1e-8)
    opt.step(closure_of(rosenbrock, p))
    np.testing.assert_allclose(p.data, [1, 1], atol=5e-2 if dtype == np.float32 else 1e-5)


def test_steps_continue_the_direction_and_mlp_loss_falls(rng):
    model, X, y, closure = mlp_problem(rng)
    opt = optim.ConjugateGradient(model.parameters(), max_iter=5)
    losses = [opt.step(closure) for _ in range(6)]
    assert losses[-1] < 0.8 * losses[0]
    assert opt.state["scalars"][3] == 1  # a direction is kept between steps


def test_raising_closure_restores(rng):
    model, X, y, closure = mlp_problem(rng)
    opt = optim.ConjugateGradient(model.parameters(), max_iter=3)
    opt.step(closure)
    before = model.flat_parameters().copy()
    calls = []

    def bad():
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return closure()

    with pytest.raises(KeyboardInterrupt):
        opt.step(bad)
    np.testing.assert_array_equal(model.flat_parameters(), before)


def test_bad_input():
    p = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="formula"):
        optim.ConjugateGradient([p], formula="hs")
    with pytest.raises(ValueError, match="restart"):
        optim.ConjugateGradient([p], restart=-1)
    with pytest.raises(TypeError, match="closure"):
        optim.ConjugateGradient([p]).step(None)
