"""Reference optimizer steps (fastnn.reference.optim) against independent sources: torch.optim over
several steps, parameters and state, where torch is installed; scalar steps worked out by hand
from the published update rules (not from the reference code) everywhere."""

import math

import numpy as np
import pytest

from fastnn.reference import optim as R
from tests.conftest import DTYPES, assert_sum_close, requires_torch
from tests.optim.cases import ALL, WITH_PENALTIES, case_id, make_model, random_grads, reference_step

STEPS = 6
# torch's name for each state array the reference keeps (RMSprop's step is torch-only)
STATE_KEYS = {"SGD": ["momentum_buffer"], "Adagrad": ["sum", "step"],
              "RMSprop": ["square_avg", "grad_avg", "momentum_buffer"],
              "Adam": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"],
              "AdamW": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]}


class Trajectory:
    """Terms of a quantity updated in place over steps: x_t = x_{t-1} + d_t rounds relative to
    |x_{t-1}| + |d_t| (an update cancels when d is about -x), so sum_t |x_t| + |d_t| bounds it.

    Every step's d is a function of the regularized gradient g' = g + wd theta + l1 sign(theta),
    homogeneous of degree 0, 1 or 2 in g' (m / sqrt(v), momentum, g'^2), so the rounding of g'
    (relative kappa eps, kappa = (|g| + wd |theta| + l1) / |g'|, which is large where g' cancels)
    reaches d at most twice as large, relatively: each step's terms are scaled by the largest
    kappa so far (the state carries earlier steps' errors forward)."""

    def __init__(self, x):
        self.last, self.terms = np.asarray(x, np.float64).copy(), np.abs(np.asarray(x, np.float64))

    def add(self, x, kappa):
        x = np.asarray(x, np.float64)
        self.terms = self.terms + 2 * kappa * (np.abs(x) + np.abs(x - self.last))
        self.last = x.copy()


def _kappa(name, opts, theta, grad, decays):
    """Condition of g' = g + wd theta + l1 sign(theta) (1 without regularization)."""
    wd = opts.get("weight_decay", 0.0) if decays and name != "AdamW" else 0.0  # AdamW shrinks theta instead
    l1 = opts.get("l1", 0.0) if decays else 0.0
    theta, grad = np.asarray(theta, np.float64), np.asarray(grad, np.float64)
    terms = np.abs(grad) + wd * np.abs(theta) + l1 * np.abs(np.sign(theta))
    value = np.abs(grad + wd * theta + l1 * np.sign(theta))  # maximize flips g: |g'| alike up to that sign
    if opts.get("maximize"):
        value = np.abs(-grad + wd * theta + l1 * np.sign(theta))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(value > 0, terms / value, np.where(terms > 0, 1e300, 1.0))


def _torch_optimizer(name, opts, tensors, decays):
    """torch.optim.<name> over the tensors, with weight decay only for the decay ones (second group
    weight_decay 0), and fastnn's L1 / max-norm options taken out (applied by hand)."""
    import torch

    opts = dict(opts)
    l1, max_norm = opts.pop("l1", 0.0), opts.pop("max_norm", None)
    if name == "AdamW":
        opts.setdefault("weight_decay", 1e-2)  # torch's and fastnn's default
    groups = [{"params": [t for t, d in zip(tensors, decays) if d]},
              {"params": [t for t, d in zip(tensors, decays) if not d], "weight_decay": 0.0}]
    return getattr(torch.optim, name)([g for g in groups if g["params"]], **opts), l1, max_norm


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL + WITH_PENALTIES, ids=case_id)
def test_reference_matches_torch_step_by_step(case, dtype):
    import torch

    name, opts = case
    buf, params = make_model(dtype)
    trainable = [p for p in params if p.requires_grad]  # torch skips parameters without a gradient
    values = [p.numpy() for p in trainable]
    decays = [p.weight_decay for p in trainable]
    states = [{} for _ in trainable]
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tensors = [torch.tensor(v, dtype=tdtype, requires_grad=True) for v in values]
    topt, l1, max_norm = _torch_optimizer(name, opts, tensors, decays)
    maximize = opts.get("maximize", False)
    track = [Trajectory(v) for v in values]
    state_track = {}
    kappa = [np.ones(v.shape) for v in values]
    rng = np.random.default_rng(7)
    for step in range(1, STEPS + 1):
        random_grads(rng, buf)
        grads = [p.grad.copy() for p in trainable]
        kappa = [np.maximum(k, _kappa(name, opts, v, g, d)) for k, v, g, d in zip(kappa, values, grads, decays)]
        reference_step(name, values, grads, states, decays, opts)
        for t, g, d in zip(tensors, grads, decays):
            t.grad = torch.tensor(g, dtype=tdtype)
            if l1 and d:  # L1's subgradient l1 sign(theta), descending even when maximizing
                t.grad += l1 * torch.sign(t.detach()) * (-1 if maximize else 1)
        topt.step()
        if max_norm is not None:
            with torch.no_grad():
                for t, d in zip(tensors, decays):
                    if d and t.ndim >= 2:
                        t.copy_(torch.renorm(t, 2, 0, max_norm))
        for i, (v, t, p) in enumerate(zip(values, tensors, trainable)):
            track[i].add(v, kappa[i])
            # a few roundings per step (regularization, state update, sqrt, quotient, update): 8
            assert_sum_close(v, t.detach().numpy(), track[i].terms, 8 * step, err_msg=f"{p.name} step {step}")
            tstate = topt.state[t]
            for key in STATE_KEYS[name]:
                if key not in states[i] or key not in tstate:
                    assert key not in states[i] or (key == "max_exp_avg_sq" and not opts.get("amsgrad")) \
                        or (key in ("grad_avg", "momentum_buffer") and name == "RMSprop"), (key, p.name)
                    continue
                want = tstate[key]
                if key == "step":
                    assert states[i][key] == int(want), p.name
                    continue
                traj = state_track.setdefault((i, key), Trajectory(np.zeros_like(states[i][key])))
                traj.add(states[i][key], kappa[i])
                assert_sum_close(states[i][key], want.numpy(), traj.terms, 8 * step,
                                 err_msg=f"{key} of {p.name} step {step}")
    assert any(not np.array_equal(v, p.numpy()) for v, p in zip(values, trainable))  # it moved


# ---- hand-computed steps (float64 scalars, one parameter theta_0 = 1, gradients g_1, g_2) --------


def _run(step_fn, grads, theta=1.0, decays=True, **opts):
    """theta after each step of a reference optimizer on a one-element parameter."""
    p, state, out = np.array([theta]), {}, []
    for g in grads:
        step_fn([p], [np.array([g])], [state], [decays], **opts)
        out.append(float(p[0]))
    return out, state


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=4e-16 * 16, atol=0)


def test_sgd_by_hand():
    # plain: theta <- theta - lr g
    _close(_run(R.sgd, [1.0, 2.0], lr=0.1)[0], [0.9, 0.7])
    # momentum: b_1 = g_1; b_2 = 0.9 b_1 + g_2 = 2.9
    _close(_run(R.sgd, [1.0, 2.0], lr=0.1, momentum=0.9)[0], [0.9, 0.9 - 0.29])
    # dampening 0.5 (not on the first step, as torch): b_2 = 0.9 + 0.5 * 2 = 1.9
    _close(_run(R.sgd, [1.0, 2.0], lr=0.1, momentum=0.9, dampening=0.5)[0], [0.9, 0.9 - 0.19])
    # nesterov: d = g + mu b: d_1 = 1 + 0.9 = 1.9, d_2 = 2 + 0.9 * 2.9 = 4.61
    _close(_run(R.sgd, [1.0, 2.0], lr=0.1, momentum=0.9, nesterov=True)[0], [1 - 0.19, 1 - 0.19 - 0.461])
    # weight decay: g' = g + wd theta = 1 + 0.1 = 1.1; then 2 + 0.1 * 0.89 = 2.089
    _close(_run(R.sgd, [1.0, 2.0], lr=0.1, weight_decay=0.1)[0], [0.89, 0.89 - 0.2089])
    # maximize: ascends
    _close(_run(R.sgd, [1.0], lr=0.1, maximize=True)[0], [1.1])
    # L1: g' = g + l1 sign(theta); a parameter without decay ignores L1 and weight decay
    _close(_run(R.sgd, [0.0], lr=0.1, l1=0.5)[0], [0.95])
    _close(_run(R.sgd, [0.0], theta=-1.0, lr=0.1, l1=0.5)[0], [-0.95])
    _close(_run(R.sgd, [0.0], lr=0.1, l1=0.5, weight_decay=0.3, decays=False)[0], [1.0])


def test_adagrad_by_hand():
    eps = 1e-10
    # s_1 = 1, s_2 = 1 + 4 = 5;  theta <- theta - lr g / (sqrt(s) + eps)
    _close(_run(R.adagrad, [1.0, 2.0], lr=0.1)[0], [1 - 0.1 / (1 + eps), 1 - 0.1 / (1 + eps) - 0.2 / (math.sqrt(5) + eps)])
    # lr_decay 0.5: step t uses lr / (1 + (t - 1) 0.5)
    got = _run(R.adagrad, [1.0, 2.0], lr=0.1, lr_decay=0.5)[0]
    _close(got[1], got[0] - (0.1 / 1.5) * 2 / (math.sqrt(5) + eps))
    # initial accumulator 1: s_1 = 2
    _close(_run(R.adagrad, [1.0], lr=0.1, initial_accumulator_value=1.0)[0], [1 - 0.1 / (math.sqrt(2) + eps)])
    _, state = _run(R.adagrad, [1.0, 2.0], lr=0.1)
    assert state["step"] == 2 and state["sum"][0] == 5.0


def test_rmsprop_by_hand():
    lr, a, eps = 0.01, 0.99, 1e-8
    v1, v2 = (1 - a) * 1.0, a * (1 - a) + (1 - a) * 4.0  # 0.01, 0.0499
    t1 = 1 - lr * 1 / (math.sqrt(v1) + eps)
    _close(_run(R.rmsprop, [1.0, 2.0], lr=lr)[0], [t1, t1 - lr * 2 / (math.sqrt(v2) + eps)])
    # centered: the mean gradient m_1 = 0.01, m_2 = 0.99 * 0.01 + 0.01 * 2 = 0.0299; sqrt(v - m^2)
    m1, m2 = 0.01, a * 0.01 + (1 - a) * 2.0
    c1 = 1 - lr / (math.sqrt(v1 - m1 * m1) + eps)
    _close(_run(R.rmsprop, [1.0, 2.0], lr=lr, centered=True)[0], [c1, c1 - lr * 2 / (math.sqrt(v2 - m2 * m2) + eps)])
    # momentum 0.9: buf_1 = g_1 / avg_1, buf_2 = 0.9 buf_1 + g_2 / avg_2
    b1 = 1 / (math.sqrt(v1) + eps)
    b2 = 0.9 * b1 + 2 / (math.sqrt(v2) + eps)
    _close(_run(R.rmsprop, [1.0, 2.0], lr=lr, momentum=0.9)[0], [1 - lr * b1, 1 - lr * b1 - lr * b2])


def _adam_by_hand(grads, lr=0.1, b1=0.9, b2=0.999, eps=1e-8, amsgrad=False, wd=0.0, decoupled=False):
    """Kingma & Ba, Algorithm 1 (with torch's eps placement: m_hat / (sqrt(v_hat) + eps)); AdamW
    (Loshchilov & Hutter) shrinks theta by lr wd first; amsgrad divides by the running max of v."""
    theta, m, v, vmax, out = 1.0, 0.0, 0.0, 0.0, []
    for t, g in enumerate(grads, start=1):
        if decoupled:
            theta *= 1 - lr * wd
        elif wd:
            g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = max(vmax, v)
        v_hat = (vmax if amsgrad else v) / (1 - b2**t)
        theta -= lr * (m / (1 - b1**t)) / (math.sqrt(v_hat) + eps)
        out.append(theta)
    return out


def test_adam_amsgrad_adamw_by_hand():
    # step 1 of Adam moves by lr (m_hat = g, v_hat = g^2), whatever g
    got = _run(R.adam, [1.0, 2.0], lr=0.1)[0]
    _close(got[0], 1 - 0.1 / (1 + 1e-8))
    _close(got, _adam_by_hand([1.0, 2.0]))
    # amsgrad: a gradient of 0 lowers v (0.999 * 0.004) but not its running max (0.004)
    got = _run(R.adam, [2.0, 0.0], lr=0.1, amsgrad=True)
    _close(got[0], _adam_by_hand([2.0, 0.0], amsgrad=True))
    assert got[1]["max_exp_avg_sq"][0] == pytest.approx(0.004, rel=1e-15)
    assert got[1]["max_exp_avg_sq"][0] > got[1]["exp_avg_sq"][0]
    assert got[0][1] != pytest.approx(_adam_by_hand([2.0, 0.0])[1], rel=1e-6)  # the max mattered
    # L2 weight decay (Adam) and decoupled weight decay (AdamW)
    _close(_run(R.adam, [1.0, 2.0], lr=0.1, weight_decay=0.1)[0], _adam_by_hand([1.0, 2.0], wd=0.1))
    got = _run(R.adam, [1.0, 2.0], lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)[0]
    _close(got[0], 0.99 - 0.1 / (1 + 1e-8))
    _close(got, _adam_by_hand([1.0, 2.0], wd=0.1, decoupled=True))
    # no decay flag: weight decay does not apply, decoupled or not
    _close(_run(R.adam, [1.0, 2.0], lr=0.1, weight_decay=0.1, decoupled_weight_decay=True, decays=False)[0],
           _adam_by_hand([1.0, 2.0]))


def test_max_norm_by_hand():
    # rows [3, 4] (norm 5) and [0.3, 0.4] (norm 0.5) with max_norm 1: the first becomes [3, 4] / (5 + 1e-7)
    p = np.array([[3.0, 4.0], [0.3, 0.4]])
    R.sgd([p], [np.zeros_like(p)], [{}], [True], lr=0.1, max_norm=1.0)
    _close(p[0], np.array([3.0, 4.0]) / (5 + 1e-7))
    np.testing.assert_array_equal(p[1], [0.3, 0.4])
    q = np.array([[3.0, 4.0]])
    R.sgd([q], [np.zeros_like(q)], [{}], [False], lr=0.1, max_norm=1.0)  # no decay flag: not constrained
    np.testing.assert_array_equal(q, [[3.0, 4.0]])
