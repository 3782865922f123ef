"""LR schedulers vs torch.optim.lr_scheduler for 40 steps (two parameter groups), state_dict
round trips, errors."""

import math

import numpy as np
import pytest

from fastnn import optim
from fastnn.optim import lr_scheduler as S
from tests.conftest import requires_torch
from tests.optim.cases import make_model

STEPS = 40
LRS = (0.1, 0.03)


def fastnn_optimizer():
    buf, params = make_model(np.float32)
    return optim.SGD([{"params": params[:3], "lr": LRS[0]}, {"params": params[3:], "lr": LRS[1]}], lr=1.0)


def torch_optimizer():
    import torch

    p1, p2 = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    return torch.optim.SGD([{"params": [p1], "lr": LRS[0]}, {"params": [p2], "lr": LRS[1]}], lr=1.0)


SCHEDULERS = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[5, 12, 12, 30], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.93),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=8),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.002),
    "LambdaLR": lambda m, o: m.LambdaLR(o, lr_lambda=lambda epoch: 0.95**epoch),
    "LambdaLR-per-group": lambda m, o: m.LambdaLR(o, lr_lambda=[lambda e: 1 / (1 + e), lambda e: 0.9 ** (e // 3)]),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.2, total_iters=4), m.CosineAnnealingLR(o, T_max=12)], milestones=[5]),
}


def run_torch(make):
    import torch

    opt = torch_optimizer()
    sched = make(torch.optim.lr_scheduler, opt)
    lrs = [sched.get_last_lr()]
    for _ in range(STEPS):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
    return lrs


@requires_torch
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_matches_torch(name):
    make = SCHEDULERS[name]
    opt = fastnn_optimizer()
    sched = make(S, opt)
    lrs = [sched.get_last_lr()]
    for _ in range(STEPS):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == lrs[-1]
    assert lrs == run_torch(make)  # same recursive formulas: the same floats
    assert len({tuple(x) for x in lrs}) > 3  # the schedule does change


@requires_torch
def test_warm_restarts_with_fractional_epochs_matches_torch():
    import torch

    ours, theirs = fastnn_optimizer(), torch_optimizer()
    a = S.CosineAnnealingWarmRestarts(ours, T_0=3, T_mult=2)
    b = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(theirs, T_0=3, T_mult=2)
    for epoch in range(12):
        for i in range(4):
            theirs.step()
            a.step(epoch + i / 4)
            b.step(epoch + i / 4)
            assert a.get_last_lr() == b.get_last_lr()


PLATEAU = [
    dict(),
    dict(mode="max", factor=0.5, patience=2, threshold=0.05, threshold_mode="abs", cooldown=3),
    dict(mode="min", factor=0.3, patience=1, threshold=0.1, cooldown=1, min_lr=[0.01, 0.001]),
    dict(patience=0, min_lr=0.02, eps=1e-3),
]


@requires_torch
@pytest.mark.parametrize("kw", PLATEAU)
def test_reduce_on_plateau_matches_torch(kw):
    import torch

    metrics = [1.0, 0.9, 0.95, 0.95, 0.91, 0.89, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5, 0.6, 0.7, 0.8]
    metrics = metrics + metrics[::-1] + [0.1] * 6
    ours, theirs = fastnn_optimizer(), torch_optimizer()
    a = S.ReduceLROnPlateau(ours, **kw)
    b = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kw)
    seen = set()
    for metric in metrics:
        a.step(metric)
        b.step(metric)
        assert a.get_last_lr() == b.get_last_lr()
        assert [g["lr"] for g in ours.param_groups] == a.get_last_lr()
        assert (a.num_bad_epochs, a.cooldown_counter, a.best) == (b.num_bad_epochs, b.cooldown_counter, b.best)
        seen.add(tuple(a.get_last_lr()))
    assert len(seen) > 1


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n != "LambdaLR-per-group"])
def test_state_dict_round_trip(name):
    """Save optimizer + scheduler after k steps, load into fresh ones, continue == uninterrupted."""
    make = SCHEDULERS[name]
    opt = fastnn_optimizer()
    sched = make(S, opt)
    for _ in range(9):
        opt.step()
        sched.step()
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    uninterrupted = []
    for _ in range(15):
        opt.step()
        sched.step()
        uninterrupted.append(sched.get_last_lr())

    opt2 = fastnn_optimizer()
    sched2 = make(S, opt2)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    resumed = []
    for _ in range(15):
        opt2.step()
        sched2.step()
        resumed.append(sched2.get_last_lr())
    assert resumed == uninterrupted


def test_reduce_on_plateau_state_dict_round_trip():
    opt = fastnn_optimizer()
    sched = S.ReduceLROnPlateau(opt, patience=1, cooldown=1)
    metrics = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4]
    for m in metrics[:5]:
        sched.step(m)
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    for m in metrics[5:]:
        sched.step(m)
    opt2 = fastnn_optimizer()
    sched2 = S.ReduceLROnPlateau(opt2)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved)
    for m in metrics[5:]:
        sched2.step(m)
    assert sched2.get_last_lr() == sched.get_last_lr() and sched2.best == sched.best


def test_lambda_callable_object_state_is_saved():
    class Decay:
        def __init__(self):
            self.rate = 0.5

        def __call__(self, epoch):
            return self.rate**epoch

    opt = fastnn_optimizer()
    fn = Decay()
    sched = S.LambdaLR(opt, fn)
    fn.rate = 0.25
    state = sched.state_dict()
    fn2 = Decay()
    S.LambdaLR(fastnn_optimizer(), fn2).load_state_dict(state)
    assert fn2.rate == 0.25


def test_scheduler_drives_the_optimizer():
    """The learning rate a scheduler sets is the one the next step uses."""
    buf, params = make_model(np.float64, frozen=())
    opt = optim.SGD(params, lr=1.0)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    buf.grads[:] = 1.0
    for lr in (1.0, 0.5, 0.25):
        before = buf.params.copy()
        opt.step()
        np.testing.assert_allclose(before - buf.params, lr)
        sched.step()


def test_errors():
    opt = fastnn_optimizer()
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        S.StepLR([], step_size=2)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        S.ReduceLROnPlateau(object())
    with pytest.raises(ValueError, match=r"LinearLR: start_factor must be in \(0, 1\], got 0"):
        S.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match=r"LinearLR: end_factor must be in \[0, 1\], got 1.5"):
        S.LinearLR(opt, end_factor=1.5)
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau: factor must be in \[0, 1\), got 1.0"):
        S.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode sideways is unknown"):
        S.ReduceLROnPlateau(opt, mode="sideways")
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 3"):
        S.ReduceLROnPlateau(opt, min_lr=[0, 0, 0])
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        S.LambdaLR(opt, [lambda e: 1.0])
    with pytest.raises(ValueError, match="CosineAnnealingWarmRestarts: T_0 must be a positive integer, got 0"):
        S.CosineAnnealingWarmRestarts(opt, T_0=0)
    with pytest.raises(ValueError, match="CosineAnnealingWarmRestarts.step: epoch must be non-negative and finite, got -1"):
        S.CosineAnnealingWarmRestarts(opt, T_0=2).step(-1)
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(fastnn_optimizer(), step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="number of milestone points"):
        S.SequentialLR(opt, [S.ExponentialLR(opt, 0.9)], milestones=[3])
    assert math.isclose(S.ExponentialLR(opt, 0.5).get_last_lr()[0], opt.param_groups[0]["lr"])


@pytest.mark.parametrize("value", [float("nan"), -1.0, float("inf")])
def test_a_learning_rate_a_lambda_makes_invalid_is_refused_before_it_is_set(value):
    from fastnn import nn

    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    s = S.LambdaLR(opt, lambda epoch: 1.0 if epoch == 0 else value)
    with pytest.raises(ValueError, match="LambdaLR: the learning rate of parameter group 0 would become"):
        s.step()
    assert opt.param_groups[0]["lr"] == 0.1  # unchanged
