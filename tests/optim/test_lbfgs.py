"""L-BFGS: the two-loop recursion against the materialized inverse Hessian, torch's iterates,
convergence, and the places where torch.optim.LBFGS surprises its users."""

import numpy as np
import pytest

from fastnn import optim
from fastnn.functional import lbfgs_two_loop
from fastnn.nn.parameter import Parameter
from fastnn.reference.lbfgs import lbfgs_inverse_hessian
from fastnn.reference.lbfgs import lbfgs_two_loop as ref_two_loop
from tests.conftest import DTYPES, requires_torch
from tests.optim.second_order_cases import closure_of, logistic, mlp_problem, rosenbrock


def _history(rng, m, n, dtype, pushes):
    """A ring buffer after `pushes` pushes of random curvature pairs (y.s > 0), as lbfgs.h fills it."""
    s, y = np.zeros((m, n), dtype), np.zeros((m, n), dtype)
    rho, ring = np.zeros(m), np.array([0, 0], np.int64)
    for _ in range(pushes):
        sk = rng.standard_normal(n)
        yk = sk + 0.3 * rng.standard_normal(n)  # y.s > 0 (a convex function's pairs)
        pos = (ring[0] + ring[1]) % m if ring[1] < m else ring[0]
        if ring[1] < m:
            ring[1] += 1
        else:
            ring[0] = (ring[0] + 1) % m
        s[pos], y[pos] = sk, yk
        rho[pos] = 1.0 / float(s[pos].astype(np.float64) @ y[pos].astype(np.float64))
    return s, y, rho, ring


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 33])
def test_two_loop_matches_dense_inverse_hessian_at_every_ring_position(rng, dtype, n):
    m = 4
    for pushes in range(0, 2 * m + 2):  # empty, filling, full, and every start slot after wrapping
        s, y, rho, ring = _history(rng, m, n, dtype, pushes)
        q = rng.standard_normal(n).astype(dtype)
        gamma = 0.7
        H = lbfgs_inverse_hessian(s, y, rho, ring, gamma)
        assert np.allclose(H, H.T, atol=1e-10)
        got = lbfgs_two_loop(s, y, rho, ring, gamma, q)
        want = H @ q.astype(np.float64)
        assert got.dtype == dtype and got.shape == (n,)
        scale = np.abs(H).sum(axis=1) @ np.abs(q) + 1  # the terms summed, bounded
        atol = (1e-5 if dtype == np.float32 else 1e-12) * scale * (m + 1)
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=f"pushes={pushes} ring={ring}")
        np.testing.assert_allclose(ref_two_loop(s, y, rho, ring, gamma, q), want.astype(dtype), rtol=1e-5, atol=atol)


def test_two_loop_secant_condition(rng):
    """H y_newest = s_newest: the defining property of the BFGS update, whatever the ring position."""
    s, y, rho, ring = _history(rng, 3, 6, np.float64, 5)
    newest = (ring[0] + ring[1] - 1) % 3
    np.testing.assert_allclose(lbfgs_two_loop(s, y, rho, ring, 0.5, y[newest]), s[newest], rtol=1e-10, atol=1e-12)


def _param(x0):
    return Parameter(np.array(x0, dtype=np.float64))


@requires_torch
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("history_size", [3, 100])
def test_iterates_match_torch_step_by_step(rng, line_search_fn, history_size):
    import torch

    fun, _, d = logistic(rng)
    x0 = rng.standard_normal(d)
    p = _param(x0)
    tp = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    kw = dict(lr=0.5 if line_search_fn is None else 1, max_iter=4, history_size=history_size,
              line_search_fn=line_search_fn, max_eval=100)
    ours, theirs = optim.LBFGS([p], **kw), torch.optim.LBFGS([tp], **kw)

    def tclosure():
        theirs.zero_grad()
        f, g = fun(tp.detach().numpy())
        tp.grad = torch.tensor(g)
        return torch.tensor(f, dtype=torch.float64)

    for step in range(5):
        f_ours = ours.step(closure_of(fun, p))
        f_theirs = theirs.step(tclosure)
        assert f_ours == pytest.approx(float(f_theirs), rel=1e-12, abs=1e-14), step
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=f"step {step}")
        state = theirs.state[theirs._params[0]]
        assert ours.n_iter == state["n_iter"] and ours.func_evals == state["func_evals"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rosenbrock_converges(dtype):
    p = Parameter(np.array([-1.2, 1.0], dtype=dtype))
    opt = optim.LBFGS([p], max_iter=200, max_eval=400, history_size=10, line_search_fn="strong_wolfe",
                      tolerance_grad=1e-5 if dtype == np.float32 else 1e-9, tolerance_change=1e-14)

    def closure():
        f, g = rosenbrock(p.data)
        p.grad[...] = g
        return f

    opt.step(closure)
    np.testing.assert_allclose(p.data, [1, 1], atol=2e-2 if dtype == np.float32 else 1e-6)
    assert opt.last_result.converged, opt.last_result


def test_small_mlp_loss_falls_and_state_round_trips(rng):
    model, X, y, closure = mlp_problem(rng)
    opt = optim.LBFGS(model.parameters(), history_size=5, line_search_fn="strong_wolfe")
    first = opt.step(closure)
    second = opt.step(closure)
    assert second < 0.9 * first
    saved = opt.state_dict()
    params = model.flat_parameters().copy()
    opt.step(closure)
    after = model.flat_parameters().copy()
    model.flat_parameters()[...] = params
    other = optim.LBFGS(model.parameters(), history_size=5, line_search_fn="strong_wolfe")
    other.load_state_dict(saved)
    other.step(closure)
    np.testing.assert_array_equal(model.flat_parameters(), after)  # the same state continues identically


def test_max_eval_counts_line_search_evaluations():
    """pytorch#91581: torch's strong-Wolfe search may make one evaluation more than max_eval."""
    calls = []
    p = _param([-1.2, 1.0])
    opt = optim.LBFGS([p], max_iter=100, max_eval=7, line_search_fn="strong_wolfe")
    opt.step(closure_of(rosenbrock, p, calls))
    assert len(calls) == 7 == opt.last_result.evaluations == opt.func_evals
    assert opt.last_result.status == 3 and "evaluations" in opt.last_result.message


def test_failed_line_search_keeps_the_best_point_and_says_so():
    """A direction along which the loss only rises (a gradient that lies): no NaN, no silent zero step."""
    p = _param([1.0, 2.0])

    def closure():
        x = p.data
        p.grad[...] = -x  # the true gradient is +x: every step along -g raises the loss
        return float(x @ x)

    opt = optim.LBFGS([p], line_search_fn="strong_wolfe")
    before = p.data.copy()
    opt.step(closure)
    np.testing.assert_array_equal(p.data, before)
    assert opt.last_result.status == 4 and "best point" in opt.last_result.message
    assert np.isfinite(p.data).all()


def test_nonfinite_loss_in_the_line_search_shrinks_the_step():
    """f = inf beyond |x| > 3: the first trial step lands there, the search shrinks and converges."""
    p = _param([2.5])

    def closure():
        x = float(p.data[0])
        if abs(x) > 3:
            p.grad[...] = np.nan
            return float("inf")
        p.grad[...] = 2 * (x + 2)
        return (x + 2) ** 2

    opt = optim.LBFGS([p], lr=100, max_iter=10, max_eval=100, line_search_fn="strong_wolfe")
    opt.step(closure)
    assert np.isfinite(p.data).all()
    assert abs(p.data[0] + 2) < 1e-3


def test_nonfinite_everywhere_stops_with_a_message():
    p = _param([1.0])
    state = {"n": 0}

    def closure():
        state["n"] += 1
        p.grad[...] = 1.0
        return 1.0 if state["n"] == 1 else float("nan")

    opt = optim.LBFGS([p], line_search_fn="strong_wolfe", max_eval=10)
    opt.step(closure)
    assert p.data[0] == 1.0
    assert opt.last_result.status in (3, 5) and not opt.last_result.converged


def test_fixed_step_overflow_steps_back():
    p = _param([1.0])

    def closure():
        x = float(p.data[0])
        p.grad[...] = 4 * x ** 3 if abs(x) < 1e3 else np.inf
        return x ** 4 if abs(x) < 1e3 else float("inf")

    opt = optim.LBFGS([p], lr=1e4, max_iter=5)
    opt.step(closure)
    assert np.isfinite(p.data).all() and opt.last_result.status == 5


def test_closure_that_raises_leaves_parameters_and_state_as_before(rng):
    fun, _, d = logistic(rng)
    p = _param(rng.standard_normal(d))
    opt = optim.LBFGS([p], line_search_fn="strong_wolfe", history_size=4, max_iter=2, max_eval=10)
    opt.step(closure_of(fun, p))
    params, state = p.data.copy(), {k: v.copy() for k, v in opt.state.items()}
    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("data loader died")
        return closure_of(fun, p)()

    with pytest.raises(RuntimeError, match="data loader died"):
        opt.step(failing)
    np.testing.assert_array_equal(p.data, params)
    for k, v in state.items():
        np.testing.assert_array_equal(opt.state[k], v, err_msg=k)


def test_bad_input_is_refused():
    p = _param([1.0, 2.0])
    with pytest.raises(ValueError, match="history_size"):
        optim.LBFGS([p], history_size=0)
    with pytest.raises(ValueError, match="line_search_fn"):
        optim.LBFGS([p], line_search_fn="armijo")
    with pytest.raises(ValueError, match="learning rate|lr"):
        optim.LBFGS([p], lr=-1)
    with pytest.raises(ValueError, match="max_iter"):
        optim.LBFGS([p], max_iter=0)
    opt = optim.LBFGS([p])
    with pytest.raises(TypeError, match="closure must be a callable"):
        opt.step(None)
    with pytest.raises(TypeError, match="closure must be a callable"):
        opt.step(3.0)
    with pytest.raises(TypeError, match="return the loss"):
        opt.step(lambda: "a string")
    np.testing.assert_array_equal(p.data, [1.0, 2.0])
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([{"params": [p]}, {"params": [_param([1.0])]}])
    saved = opt.state_dict()
    saved["param_groups"][0]["history_size"] = 0
    with pytest.raises(ValueError, match="history_size"):
        opt.load_state_dict(saved)


def test_weight_decay_adds_the_l2_penalty(rng):
    fun, _, d = logistic(rng, l2=0.0)
    p = _param(np.zeros(d))
    opt = optim.LBFGS([p], line_search_fn="strong_wolfe", max_iter=200, weight_decay=0.1, tolerance_grad=1e-10,
                      tolerance_change=1e-14)
    opt.step(closure_of(fun, p))
    f, g = fun(p.data)
    np.testing.assert_allclose(g + 0.1 * p.data, 0, atol=1e-7)  # stationary point of f + 0.05 |w|^2
