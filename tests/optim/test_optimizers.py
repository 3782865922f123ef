"""Fused optimizer steps vs the per-parameter NumPy reference and vs torch.optim, for every option
combination; frozen parameters stay put, no-decay parameters get no weight decay / L1 / max-norm;
param groups; zero_grad; same results with 1 and 2 threads."""

import numpy as np
import pytest

from fastnn import optim
from tests.conftest import DTYPES, assert_close, num_threads, requires_torch
from tests.optim.cases import ALL, WITH_PENALTIES, case_id, make_model, random_grads, run_fastnn, run_reference, run_torch

STEPS = 6


def assert_params_close(actual, expected, dtype, scale):
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, dtype=dtype, scale=scale, err_msg=f"parameter {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL + WITH_PENALTIES, ids=case_id)
def test_matches_reference(case, dtype):
    name, opts = case
    _, params, _ = run_fastnn(name, opts, dtype, STEPS)
    expected = run_reference(name, opts, dtype, STEPS)
    assert_params_close([p.data for p in params], expected, dtype, scale=10)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ALL + WITH_PENALTIES, ids=case_id)
def test_matches_torch(case, dtype):
    name, opts = case
    _, params, _ = run_fastnn(name, opts, dtype, STEPS)
    expected = run_torch(name, opts, dtype, STEPS)
    assert_params_close([p.data for p in params], expected, dtype, scale=20)


@pytest.mark.parametrize("case", ALL + WITH_PENALTIES, ids=case_id)
def test_frozen_parameters_do_not_move_and_others_do(case):
    name, opts = case
    start = [p.numpy() for p in make_model(np.float32)[1]]
    _, params, _ = run_fastnn(name, opts, np.float32, 2)
    for p, p0 in zip(params, start):
        if p.requires_grad:
            assert not np.array_equal(p.data, p0), p.name
        else:
            np.testing.assert_array_equal(p.data, p0)


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"])
def test_decay_terms_skip_no_decay_parameters(name):
    """With zero gradients only the decay terms move parameters: DECAY ones shrink, the rest stay."""
    buf, params = make_model(np.float64)
    start = [p.numpy() for p in params]
    opt = getattr(optim, name)(params, lr=0.1, weight_decay=0.5, l1=0.1)
    buf.grads[:] = 0
    opt.step()
    for p, p0 in zip(params, start):
        if p.requires_grad and p.weight_decay:
            assert np.abs(p.data).sum() < np.abs(p0).sum(), p.name
        else:
            np.testing.assert_array_equal(p.data, p0, err_msg=p.name)


def test_max_norm_bounds_rows_of_decay_matrices_only():
    buf, params = make_model(np.float64, scale=3.0)
    start = [p.numpy() for p in params]
    opt = optim.SGD(params, lr=1e-3, max_norm=0.5)
    buf.grads[:] = 0
    opt.step()
    for p, p0 in zip(params, start):
        if p.requires_grad and p.weight_decay and p.data.ndim >= 2:
            norms = np.linalg.norm(p.data.reshape(p.shape[0], -1), axis=1)
            assert norms.max() <= 0.5 + 1e-12, p.name
        else:
            np.testing.assert_array_equal(p.data, p0, err_msg=p.name)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_param_groups_with_own_hyperparameters_match_torch(dtype):
    import torch

    buf, params = make_model(dtype, decay=[True] * 10, frozen=())  # torch decays every parameter of a group
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tensors = [torch.tensor(p.numpy(), dtype=tdtype, requires_grad=True) for p in params]
    groups = lambda ps: [{"params": ps[:4], "lr": 0.05, "betas": (0.8, 0.99)}, {"params": ps[4:], "weight_decay": 0.0}]  # noqa: E731
    opt = optim.Adam(groups(params), lr=0.1, weight_decay=0.1)
    topt = torch.optim.Adam(groups(tensors), lr=0.1, weight_decay=0.1)
    rng = np.random.default_rng(5)
    for step in range(STEPS):
        random_grads(rng, buf)
        for t, p in zip(tensors, params):
            t.grad = torch.tensor(p.grad.copy(), dtype=tdtype)
        if step == 3:  # a scheduler-like change of one group's lr
            opt.param_groups[1]["lr"] = topt.param_groups[1]["lr"] = 0.02
        opt.step()
        topt.step()
    for p, t in zip(params, tensors):
        assert_close(p.data, t.detach().numpy(), dtype=dtype, scale=20, err_msg=p.name)
    assert opt.param_groups[0]["lr"] == 0.05 and opt.param_groups[1]["weight_decay"] == 0.0


def test_groups_share_one_pass_per_group_and_step_counts():
    buf, params = make_model(np.float32, frozen=())
    opt = optim.Adam([{"params": params[:2]}, {"params": params[2:]}])
    for _ in range(3):
        opt.step()
    np.testing.assert_array_equal(opt.state["step"], [3, 3])
    assert opt.state["exp_avg"].shape == buf.params.shape


def test_group_of_frozen_parameters_does_not_count_steps():
    buf, params = make_model(np.float32, frozen=(0, 1))
    opt = optim.Adam([{"params": params[:2]}, {"params": params[2:]}])
    opt.step()
    np.testing.assert_array_equal(opt.state["step"], [0, 1])


def test_unfreezing_a_parameter_is_seen_at_the_next_step():
    buf, params = make_model(np.float32)
    opt = optim.SGD(params, lr=0.1)
    random_grads(np.random.default_rng(0), buf)
    frozen = params[3]
    before = frozen.numpy()
    opt.step()
    np.testing.assert_array_equal(frozen.data, before)
    frozen.requires_grad = True
    opt.step()
    assert_close(frozen.data, before - 0.1 * frozen.grad)


def test_step_returns_closure_value():
    buf, params = make_model(np.float32)
    opt = optim.SGD(params, lr=0.1)
    calls = []
    assert opt.step(lambda: calls.append(1) or 1.5) == 1.5 and calls == [1]
    assert opt.step() is None


def test_zero_grad_whole_buffer_and_subset():
    buf, params = make_model(np.float32)
    opt = optim.SGD(params, lr=0.1)
    random_grads(np.random.default_rng(0), buf)
    opt.zero_grad()
    assert not buf.grads.any()

    random_grads(np.random.default_rng(0), buf)
    before = buf.grads.copy()
    sub = optim.SGD([params[0], params[2], params[4]], lr=0.1)
    sub.zero_grad()
    for i, p in enumerate(params):
        if i in (0, 2, 4):
            assert not p.grad.any()
        else:
            np.testing.assert_array_equal(p.grad.ravel(), before[p.offset : p.offset + p.size])


def test_optimizer_of_a_subset_leaves_the_rest_alone():
    buf, params = make_model(np.float32, frozen=())
    before = buf.params.copy()
    opt = optim.Adam(params[4:6], lr=0.1)
    random_grads(np.random.default_rng(0), buf)
    opt.step()
    changed = buf.params != before
    for i, p in enumerate(params):
        assert changed[p.offset : p.offset + p.size].all() == (i in (4, 5)), p.name


@pytest.mark.parametrize("case", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, max_norm=1.0)),
                                  ("Adagrad", dict(lr=0.1, l1=0.01, max_norm=2.0)),
                                  ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9, max_norm=1.0)),
                                  ("Adam", dict(lr=0.1, amsgrad=True, weight_decay=0.1, l1=0.01, max_norm=1.0)),
                                  ("AdamW", dict(lr=0.1, maximize=True, max_norm=1.0))], ids=case_id)
def test_same_result_with_one_and_two_threads(case):
    name, opts = case
    shapes = [(300, 400), (400,), (200, 300), (3, 30000)]

    def run(threads):
        with num_threads(threads):
            model = make_model(np.float32, shapes=shapes, decay=[True, False, True, True], frozen=(), scale=0.1)
            buf, _, _ = run_fastnn(name, opts, np.float32, 3, model=model)
            return buf.params.copy()

    np.testing.assert_array_equal(run(1), run(2))


@pytest.mark.parametrize("case", [("Adagrad", dict(lr=0.1, l1=0.01, max_norm=2.0)),
                                  ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
                                  ("Adam", dict(lr=0.1, amsgrad=True, weight_decay=0.1))], ids=case_id)
def test_result_does_not_depend_on_buffer_alignment(case):
    """The same bits wherever the buffers are allocated (vector and scalar paths round alike)."""
    name, opts = case

    def run(shift):
        model = make_model(np.float32)
        buf = model[0]
        n = buf.params.size
        params, grads = np.zeros(n + 8, np.float32), np.zeros(n + 8, np.float32)
        params[shift : shift + n] = buf.params
        buf.params, buf.grads = params[shift : shift + n], grads[shift : shift + n]
        run_fastnn(name, opts, np.float32, 3, model=model)
        return buf.params.copy()

    first = run(0)
    for shift in (1, 2, 3, 5):
        np.testing.assert_array_equal(run(shift), first, err_msg=f"shifted by {shift} elements")
