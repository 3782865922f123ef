"""Optimizer construction, hyperparameter validation and state_dict / load_state_dict."""

import io
import json

import numpy as np
import pytest

from fastnn import optim
from fastnn.nn.parameter import pack
from tests.optim.cases import make_model, random_grads

FULL_STATE = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.2)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
    ("Adam", dict(lr=0.1, amsgrad=True, weight_decay=0.1, max_norm=1.0)),
    ("AdamW", dict(lr=0.1, l1=0.01)),
]


def grads_sequence(n, size, dtype, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=size).astype(dtype) for _ in range(n)]


def save_plain(state_dict):
    """Store without pickle: arrays through np.savez (allow_pickle=False), groups through JSON."""
    f = io.BytesIO()
    np.savez(f, **state_dict["state"])
    groups = json.dumps(state_dict["param_groups"])
    f.seek(0)
    with np.load(f, allow_pickle=False) as arrays:
        return {"state": {k: arrays[k] for k in arrays.files}, "param_groups": json.loads(groups)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,opts", FULL_STATE, ids=[n for n, _ in FULL_STATE])
def test_resume_from_state_dict_equals_uninterrupted(name, opts, dtype):
    grads = grads_sequence(6, make_model(dtype)[0].params.size, dtype)

    buf, params = make_model(dtype)
    opt = getattr(optim, name)(params, **opts)
    for g in grads[:3]:
        buf.grads[:] = g
        opt.step()
    saved_params, saved = buf.params.copy(), save_plain(opt.state_dict())
    for g in grads[3:]:
        buf.grads[:] = g
        opt.step()

    buf2, params2 = make_model(dtype, seed=99)
    buf2.params[:] = saved_params
    opt2 = getattr(optim, name)(params2, **{**opts, "lr": 123.0})  # hyperparameters come from the state
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == opts["lr"]
    for g in grads[3:]:
        buf2.grads[:] = g
        opt2.step()
    np.testing.assert_array_equal(buf2.params, buf.params)


def test_state_dict_is_a_copy_of_plain_data():
    buf, params = make_model(np.float32)
    opt = optim.Adam(params, lr=0.1)
    random_grads(np.random.default_rng(0), buf)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert set(sd["state"]) == {"step", "exp_avg", "exp_avg_sq"}
    assert all(isinstance(v, np.ndarray) for v in sd["state"].values())
    assert sd["param_groups"][0]["params"] == list(range(len(params)))
    before = sd["state"]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"]["exp_avg"], before)
    assert sd["state"]["exp_avg"].shape == buf.params.shape


def test_state_dict_numbers_parameters_across_groups():
    buf, params = make_model(np.float32)
    opt = optim.SGD([{"params": params[:3]}, {"params": params[3:], "lr": 0.5}], lr=0.1)
    groups = opt.state_dict()["param_groups"]
    assert groups[0]["params"] == [0, 1, 2] and groups[1]["params"] == list(range(3, len(params)))
    assert groups[1]["lr"] == 0.5


def fresh(name="Adam", **kw):
    buf, params = make_model(np.float32)
    return getattr(optim, name)(params, lr=0.1, **kw)


def stepped_state(name="Adam", **kw):
    opt = fresh(name, **kw)
    opt.step()
    return opt.state_dict()


def _wrong(sd, edit):
    edit(sd)
    return sd


BAD_STATE_DICTS = [
    ("not a dict", lambda sd: [1, 2], r"expected a dict with keys 'param_groups' and 'state'"),
    ("missing key", lambda sd: {"state": sd["state"]}, r"expected a dict with keys"),
    ("group count", lambda sd: _wrong(sd, lambda d: d["param_groups"].append(dict(d["param_groups"][0]))),
     r"2 parameter groups, the optimizer has 1"),
    ("group size", lambda sd: _wrong(sd, lambda d: d["param_groups"][0].update(params=[0, 1])),
     r"doesn't match the size of optimizer's group \(group 0: 2 parameters saved, 10 in the optimizer\)"),
    ("missing hyperparameter", lambda sd: _wrong(sd, lambda d: d["param_groups"][0].pop("betas")),
     r"lacks the hyperparameters \['betas'\]"),
    ("invalid hyperparameter", lambda sd: _wrong(sd, lambda d: d["param_groups"][0].update(lr=-1.0)),
     r"parameter group 0: Invalid learning rate: -1.0"),
    ("unknown entry", lambda sd: _wrong(sd, lambda d: d["state"].update(momentum_buffer=d["state"]["exp_avg"])),
     r"unknown state entries \['momentum_buffer'\]"),
    ("wrong length", lambda sd: _wrong(sd, lambda d: d["state"].update(exp_avg=d["state"]["exp_avg"][:-1])),
     r"state\['exp_avg'\] must be a float32 array of shape \(\d+,\) like the model's flat buffer, got float32 array of shape"),
    ("wrong dtype", lambda sd: _wrong(sd, lambda d: d["state"].update(exp_avg_sq=d["state"]["exp_avg_sq"].astype(np.float64))),
     r"state\['exp_avg_sq'\] must be a float32 array .* got float64"),
    ("not an array", lambda sd: _wrong(sd, lambda d: d["state"].update(exp_avg=[0.0])),
     r"state\['exp_avg'\] must be a float32 array"),
    ("missing step", lambda sd: _wrong(sd, lambda d: d["state"].pop("step")),
     r"state\['step'\] must be an integer array of shape \(1,\)"),
    ("float step", lambda sd: _wrong(sd, lambda d: d["state"].update(step=np.array([1.0]))),
     r"state\['step'\] must be an integer array"),
    ("moments missing after steps", lambda sd: _wrong(sd, lambda d: d["state"].pop("exp_avg")),
     r"the state has steps \[1\] but lacks \['exp_avg'\]"),
    ("negative step", lambda sd: _wrong(sd, lambda d: d["state"].update(step=np.array([-1]))),
     r"state\['step'\] has negative counts"),
]


@pytest.mark.parametrize("what,make,match", BAD_STATE_DICTS, ids=[w for w, _, _ in BAD_STATE_DICTS])
def test_mismatched_state_dict_raises_and_changes_nothing(what, make, match):
    opt = fresh("Adam")
    opt.step()
    before = opt.state_dict()
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(make(stepped_state("Adam")))
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for k in before["state"]:
        np.testing.assert_array_equal(after["state"][k], before["state"][k])


def test_sgd_momentum_flag_without_buffer_is_rejected():
    sd = stepped_state("SGD", momentum=0.9)
    del sd["state"]["momentum_buffer"]
    with pytest.raises(ValueError, match="momentum_buffer_initialized is set but momentum_buffer is missing"):
        fresh("SGD", momentum=0.9).load_state_dict(sd)


def test_state_saved_before_the_first_step_loads():
    opt = fresh("Adam")
    opt.load_state_dict(fresh("Adam").state_dict())
    opt.step()
    np.testing.assert_array_equal(opt.state["step"], [1])


def test_state_of_another_optimizer_is_rejected():
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: .*lacks the hyperparameters"):
        fresh("Adam").load_state_dict(stepped_state("SGD", momentum=0.9))


def test_state_of_another_model_size_is_rejected():
    buf, params = pack([(3, 2)], np.float32)
    small = optim.Adam(params)
    small.step()
    opt = fresh("Adam")
    with pytest.raises(ValueError, match=r"lacks the hyperparameters|doesn't match the size"):
        opt.load_state_dict(small.state_dict())


def test_adamw_stays_decoupled_after_loading_adam_state():
    buf, params = make_model(np.float32)
    adam = optim.Adam(params, lr=0.1)
    adamw = optim.AdamW(params, lr=0.1)
    adamw.load_state_dict(adam.state_dict())
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True


BAD_HYPERPARAMETERS = [
    ("SGD", dict(lr=-1), r"Invalid learning rate: -1"),
    ("SGD", dict(lr=float("nan")), r"Invalid learning rate: nan"),
    ("SGD", dict(lr=float("inf")), r"Invalid learning rate: inf"),
    ("SGD", dict(lr=0.1, momentum=-0.5), r"Invalid momentum value: -0.5"),
    ("SGD", dict(lr=0.1, weight_decay=-1), r"Invalid weight_decay value: -1"),
    ("SGD", dict(lr=0.1, nesterov=True), r"Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), r"Nesterov momentum requires"),
    ("SGD", dict(lr=0.1, l1=-0.1), r"Invalid l1 value: -0.1"),
    ("SGD", dict(lr=0.1, max_norm=0.0), r"Invalid max_norm value: 0.0"),
    ("Adagrad", dict(lr_decay=-1), r"Invalid lr_decay value: -1"),
    ("Adagrad", dict(initial_accumulator_value=-1), r"Invalid initial_accumulator_value value: -1"),
    ("Adagrad", dict(eps=-1), r"Invalid epsilon value: -1"),
    ("RMSprop", dict(alpha=-1), r"Invalid alpha value: -1"),
    ("RMSprop", dict(momentum=-1), r"Invalid momentum value: -1"),
    ("RMSprop", dict(eps=-1), r"Invalid epsilon value: -1"),
    ("Adam", dict(betas=(1.0, 0.999)), r"Invalid beta parameter at index 0: 1.0"),
    ("Adam", dict(betas=(0.9, -0.1)), r"Invalid beta parameter at index 1: -0.1"),
    ("Adam", dict(betas=(0.9,)), r"Invalid betas"),
    ("Adam", dict(eps=-1e-8), r"Invalid epsilon value: -1e-08"),
    ("AdamW", dict(weight_decay=-0.1), r"Invalid weight_decay value: -0.1"),
]


@pytest.mark.parametrize("name,kw,match", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters(name, kw, match):
    buf, params = make_model(np.float32)
    with pytest.raises(ValueError, match=match):
        getattr(optim, name)(params, **kw)


def test_bad_group_hyperparameter():
    buf, params = make_model(np.float32)
    with pytest.raises(ValueError, match=r"Invalid learning rate: -2"):
        optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": -2}])


def test_bad_params():
    buf, params = make_model(np.float32)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="every group is empty"):
        optim.SGD([{"params": []}], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Parameters or dicts, but got Parameter"):
        optim.SGD(params[0], lr=0.1)
    with pytest.raises(TypeError, match="can only optimize fastnn Parameters, but one of the params is ndarray"):
        optim.SGD([params[0], np.zeros(3)], lr=0.1)
    late_buf, late = pack([(3,)], np.float32)
    opt = optim.SGD(params[:1], lr=0.1)
    opt.add_param_group({"params": late})  # another model's parameters join one flat buffer (issue 11)
    assert late[0].buffer is params[0].buffer and opt.buffer is late[0].buffer
    with pytest.raises(ValueError, match="duplicate parameters"):
        optim.SGD([params[0], params[0]], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": params[:2]}, {"params": params[1:3]}], lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD([{"params": set(params[:2])}], lr=0.1)


def test_parameters_of_several_buffers_are_gathered_into_one():
    """A model built from separately created modules still gets one fused step."""
    _, a = pack([(2, 3), (3,)], np.float32)
    _, b = pack([(4,)], np.float32)
    for p, v in zip(a + b, (1.0, 2.0, 3.0)):
        p.data[...] = v
    opt = optim.SGD(a + b, lr=0.5)
    assert a[0].buffer is b[0].buffer is opt.buffer and opt.buffer.params.size == 13
    for p, v in zip(a + b, (1.0, 2.0, 3.0)):
        assert np.all(p.data == v)
        p.grad[...] = 1.0
    opt.step()
    for p, v in zip(a + b, (1.0, 2.0, 3.0)):
        np.testing.assert_allclose(p.data, v - 0.5)


def test_add_param_group_later():
    buf, params = make_model(np.float32, frozen=())
    opt = optim.Adagrad(params[:5], lr=0.1, initial_accumulator_value=0.3)
    opt.add_param_group({"params": params[5:], "initial_accumulator_value": 0.7})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["lr"] == 0.1
    s = opt.state["sum"]
    assert np.all(s[: params[5].offset] == np.float32(0.3)) and np.all(s[params[5].offset :] == np.float32(0.7))
    np.testing.assert_array_equal(opt.state["step"], [0, 0])
    opt.step()
    np.testing.assert_array_equal(opt.state["step"], [1, 1])


def test_load_state_dict_refuses_parameter_indices_that_do_not_exist():
    from fastnn import nn, optim

    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    sd = opt.state_dict()
    sd["param_groups"][0]["params"] = [7, 99]
    with pytest.raises(ValueError, match=r"parameter group 0 lists parameters \[7, 99\], expected \[0, 1\]"):
        opt.load_state_dict(sd)
    opt.load_state_dict(opt.state_dict())  # its own indices load
