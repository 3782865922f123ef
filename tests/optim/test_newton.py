"""Newton with Levenberg-Marquardt damping: one iteration on a convex quadratic, damping and the
gradient fallback on an indefinite Hessian, central differences when no Hessian is given."""

import numpy as np
import pytest

from fastnn import optim
from fastnn.nn.parameter import Parameter
from tests.optim.second_order_cases import closure_of, mlp_problem, quadratic, rosenbrock, rosenbrock_hess


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_convex_quadratic_in_one_iteration(rng, dtype):
    n = 8
    fun, A, b, x_star = quadratic(rng, n, dtype=dtype, cond=30.0)
    p = Parameter(np.zeros(n, dtype))
    opt = optim.Newton([p], hess=lambda: A, max_iter=1, tolerance_grad=0)
    opt.step(closure_of(fun, p))
    np.testing.assert_allclose(p.data, x_star, atol=1e-4 if dtype == np.float32 else 1e-10)


def test_indefinite_hessian_is_damped():
    """f = x0^2 - x1^2 + x1^4: H is indefinite at the start; the step must still descend."""
    def fun(x):
        return float(x[0] ** 2 - x[1] ** 2 + x[1] ** 4), np.array([2 * x[0], -2 * x[1] + 4 * x[1] ** 3])

    def hess():
        return np.diag([2.0, -2 + 12 * p.data[1] ** 2])

    p = Parameter(np.array([1.0, 0.1]))
    opt = optim.Newton([p], hess=hess, max_iter=50, tolerance_grad=1e-10)
    opt.step(closure_of(fun, p))
    np.testing.assert_allclose(p.data, [0, 1 / np.sqrt(2)], atol=1e-7)
    assert opt.state["scalars"][0] >= 0


def test_rosenbrock_exact_and_finite_difference_hessian():
    for hess in (lambda: rosenbrock_hess(p.data), None):
        p = Parameter(np.array([-1.2, 1.0]))
        opt = optim.Newton([p], hess=hess, max_iter=100, max_eval=2000, tolerance_grad=1e-9)
        opt.step(closure_of(rosenbrock, p))
        np.testing.assert_allclose(p.data, [1, 1], atol=1e-6)


def test_small_mlp_with_finite_differences(rng):
    model, X, y, closure = mlp_problem(rng, hidden=4)
    opt = optim.Newton(model.parameters(), max_iter=5, max_eval=10000, damping=1e-3)
    first = opt.step(closure)
    opt.step(closure)
    assert closure() < 0.9 * first
    assert opt.state["scalars"][0] >= 1e-3  # the lambda that made H + lambda I positive definite


def test_bad_input():
    p = Parameter(np.zeros(2))
    with pytest.raises(TypeError, match="hess"):
        optim.Newton([p], hess=3)
    opt = optim.Newton([p], hess=lambda: np.eye(3))
    with pytest.raises(ValueError, match="shape \\(2, 2\\)"):
        opt.step(lambda: (p.grad.__setitem__(Ellipsis, 1.0), 1.0)[1])
    np.testing.assert_array_equal(p.data, 0)
