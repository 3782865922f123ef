"""The strong-Wolfe line search (optim/line_search.h): the conditions hold where it says so,
torch's choice of step is reproduced, a NaN/inf shrinks the step, and the budget is exact."""

import numpy as np
import pytest

from fastnn._config import _C
from tests.conftest import requires_torch
from tests.optim.second_order_cases import rosenbrock


def _search(fun, x0, d, t, c1=1e-4, c2=0.9, max_evals=25, dtype=np.float64):
    x0 = np.asarray(x0, dtype=dtype)
    d = np.asarray(d, dtype=dtype)
    x, g = x0.copy(), np.zeros_like(x0)
    f0, g0 = fun(x0)
    g0 = np.asarray(g0, dtype=dtype)
    calls = []

    def objective():
        calls.append(x.copy())
        f, grad = fun(x)
        g[...] = grad
        return f

    r = _C.strong_wolfe(objective, x, g, d, float(t), float(f0), g0, c1, c2, 1e-9, max_evals)
    return r, x, g, f0, g0, calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("t", [1e-3, 1.0, 30.0])
def test_strong_wolfe_conditions_hold(dtype, t):
    x0 = np.array([-1.2, 1.0])
    d = -rosenbrock(x0)[1]
    r, x, g, f0, g0, calls = _search(rosenbrock, x0, d, t / np.abs(d).sum(), dtype=dtype)
    assert r["wolfe"] and r["evals"] == len(calls)
    gtd0 = float(g0 @ d.astype(dtype))
    f, gx = rosenbrock(x)
    assert r["f"] == pytest.approx(f, rel=1e-5)
    assert f <= f0 + 1e-4 * r["t"] * gtd0 * (1 - 1e-6)
    assert abs(float(gx @ d)) <= 0.9 * abs(gtd0) * (1 + 1e-4)
    np.testing.assert_allclose(x, (x0 + r["t"] * d).astype(dtype), rtol=1e-6)
    np.testing.assert_allclose(g, gx, rtol=1e-4, atol=1e-4)  # the gradient returned is the one at x


@requires_torch
@pytest.mark.parametrize("t", [1e-4, 0.01, 3.0])
def test_same_step_as_torch(t):
    import torch
    from torch.optim.lbfgs import _strong_wolfe

    x0 = np.array([-1.2, 1.0, 0.5])
    d = -rosenbrock(x0)[1]
    r, x, g, f0, g0, calls = _search(rosenbrock, x0, d, t, max_evals=26)

    def obj(xt, step, dt):
        f, gr = rosenbrock(xt.numpy() + float(step) * dt.numpy())
        return f, torch.tensor(gr)

    tx, td, tg0 = torch.tensor(x0), torch.tensor(d), torch.tensor(g0)
    f_t, g_t, t_t, evals_t = _strong_wolfe(obj, tx, t, td, f0, tg0, float(tg0 @ td))
    assert r["t"] == pytest.approx(t_t, rel=1e-10)
    assert r["f"] == pytest.approx(float(f_t), rel=1e-10)
    assert r["evals"] == evals_t
    np.testing.assert_allclose(g, g_t.numpy(), rtol=1e-10)


def test_nonfinite_value_shrinks_the_step():
    def fun(x):
        if x[0] > 1.0:
            return float("nan"), np.array([np.nan])
        return float((x[0] - 0.8) ** 2), np.array([2 * (x[0] - 0.8)])

    r, x, g, f0, g0, calls = _search(fun, [0.0], [1.0], 10.0)
    assert r["nonfinite"] and np.isfinite(x).all() and r["f"] < f0
    assert abs(x[0] - 0.8) < 0.2


def test_budget_is_exact_and_best_point_is_kept():
    r, x, g, f0, g0, calls = _search(rosenbrock, [-1.2, 1.0], -rosenbrock(np.array([-1.2, 1.0]))[1], 1.0, max_evals=2)
    assert r["evals"] == len(calls) == 2
    assert r["f"] <= f0
    f, _ = rosenbrock(x)
    assert f == pytest.approx(r["f"])


def test_not_a_descent_direction_is_refused():
    with pytest.raises(ValueError, match="descent direction"):
        _search(rosenbrock, [-1.2, 1.0], rosenbrock(np.array([-1.2, 1.0]))[1], 1.0)
