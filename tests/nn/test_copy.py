"""copy.deepcopy and pickle of models and optimizers through fastnn's own format (io.to_bytes /
from_bytes): a copy is independent, keeps modes, frozen flags and optimizer state, and trains to
bit-identical results; models cross process boundaries as bytes."""

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import io, nn, optim


def make_model(dtype=np.float32):
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.25),
                         nn.Residual(nn.Sequential(nn.Linear(8, 8), nn.Tanh())), nn.Linear(8, 3)).to(dtype)


def data(dtype=np.float32, n=60):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype(dtype), np.arange(n) % 3


def trained(dtype=np.float32):
    model = make_model(dtype)
    opt = optim.Adam(optim.param_groups(model, weight_decay=0.01), lr=0.01)
    X, y = data(dtype)
    fastnn.fit(model, X, y, optimizer=opt, epochs=2, batch_size=16, seed=3, verbose=0)
    return model, opt


COPIERS = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "pickle-protocol-2": lambda obj: pickle.loads(pickle.dumps(obj, protocol=2)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("how", sorted(COPIERS))
def test_copy_trains_to_bit_identical_results_and_independently(how, dtype):
    model, opt = trained(dtype)
    model_copy, opt_copy = COPIERS[how]((model, opt))
    assert opt_copy.param_groups[0]["params"][0] is model_copy[0].weight  # the optimizer of the copied model
    assert model_copy.dtype == np.dtype(dtype) and repr(model_copy) == repr(model)
    np.testing.assert_array_equal(model_copy.flat_parameters(), model.flat_parameters())
    assert not np.shares_memory(model_copy.flat_parameters(), model.flat_parameters())
    before = model.flat_parameters().copy()
    X, y = data(dtype)
    fastnn.fit(model_copy, X, y, optimizer=opt_copy, epochs=2, batch_size=16, seed=9, verbose=0)
    np.testing.assert_array_equal(model.flat_parameters(), before)  # training the copy left the original alone
    fastnn.fit(model, X, y, optimizer=opt, epochs=2, batch_size=16, seed=9, verbose=0)
    np.testing.assert_array_equal(model_copy.flat_parameters(), model.flat_parameters())
    for key, value in opt.state_dict()["state"].items():
        np.testing.assert_array_equal(opt_copy.state_dict()["state"][key], value, err_msg=key)
    np.testing.assert_array_equal(model_copy.predict(X), model.predict(X))


@pytest.mark.parametrize("how", sorted(COPIERS))
def test_copy_keeps_modes_frozen_parameters_and_running_statistics(how):
    model, _ = trained()
    model.train()
    model[1].eval()
    model[1].requires_grad_(False)
    model_copy = COPIERS[how](model)
    assert [m.training for m in model_copy.modules()] == [m.training for m in model.modules()]
    assert [p.requires_grad for p in model_copy.parameters()] == [p.requires_grad for p in model.parameters()]
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(model_copy.state_dict()[key], value, err_msg=key)
    assert not model_copy[1]._layer.params_trainable  # the C++ layer knows it is frozen


def test_copied_optimizer_alone_holds_a_copy_of_its_model():
    model, opt = trained()
    opt_copy = copy.deepcopy(opt)
    p = opt_copy.param_groups[0]["params"][0]
    assert p is not model[0].weight and p.model is not model
    np.testing.assert_array_equal(p.data, model[0].weight.data)
    assert [g["weight_decay"] for g in opt_copy.param_groups] == [0.01, 0.0]
    assert int(opt_copy.state["step"][0]) == int(opt.state["step"][0]) > 0


def test_submodule_and_parameter_copies():
    model, _ = trained()
    layer = copy.deepcopy(model[0])  # a layer alone: a Linear of its own
    assert isinstance(layer, nn.Linear) and np.array_equal(layer.weight.data, model[0].weight.data)
    weight = pickle.loads(pickle.dumps(model[0].weight))  # a parameter alone drags its model along
    np.testing.assert_array_equal(weight.data, model[0].weight.data)
    free = nn.Parameter(np.arange(3.0), requires_grad=False)
    free_copy = copy.deepcopy(free)
    assert free_copy is not free and not free_copy.requires_grad and np.array_equal(free_copy.data, free.data)


def test_a_module_written_in_python_cannot_be_pickled_clearly():
    class Scale(nn.Module):
        def forward(self, x):
            return 2 * x

        def backward(self, g):
            return 2 * g

    with pytest.raises(TypeError, match="Scale is not a built-in layer"):
        pickle.dumps(nn.Sequential(nn.Linear(2, 2), Scale()))


def test_to_bytes_and_from_bytes_with_the_optimizer():
    model, opt = trained()
    data_bytes = io.to_bytes(model, opt, extra={"note": "x"})
    assert isinstance(data_bytes, bytes)
    model2, opt2, extra = io.from_bytes(data_bytes, with_optimizer=True)
    assert extra == {"note": "x"} and type(opt2) is optim.Adam and len(opt2.param_groups) == 2
    assert [len(g["params"]) for g in opt2.param_groups] == [len(g["params"]) for g in opt.param_groups]
    assert model2.training == model.training
    np.testing.assert_array_equal(model2.flat_parameters(), model.flat_parameters())
    assert io.from_bytes(data_bytes).training == model.training  # load() would give eval mode


def test_save_and_load_an_optimizer_with_two_groups(tmp_path):
    model, opt = trained()
    fastnn.save(tmp_path / "m.fnn", model, opt)
    model2, opt2, _ = fastnn.load(tmp_path / "m.fnn", with_optimizer=True)
    assert not model2.training
    assert [g["weight_decay"] for g in opt2.param_groups] == [0.01, 0.0]
    names = {id(p): n for n, p in model2.named_parameters()}
    assert [names[id(p)] for p in opt2.param_groups[1]["params"]] == \
        [n for n, p in model.named_parameters() if "bias" in n or n.startswith("1.")]


def test_bad_bytes_and_foreign_optimizers_are_clear_errors():
    with pytest.raises(io.ModelFileError, match="from_bytes"):
        io.from_bytes(b"not a zip file")
    with pytest.raises(io.ModelFileError, match="from_bytes"):
        io.from_bytes(io.to_bytes(make_model())[:-20])
    with pytest.raises(TypeError, match="from_bytes: data must be bytes"):
        io.from_bytes("text")
    with pytest.raises(TypeError, match="to_bytes: model"):
        io.to_bytes(object())
    other = make_model()
    with pytest.raises(ValueError, match="not a parameter of the model"):
        io.to_bytes(make_model(), optim.SGD(other.parameters(), lr=0.1))


def test_a_model_crosses_a_process_boundary_as_bytes():
    model, _ = trained()
    X, _ = data()
    code = ("import sys, numpy as np, fastnn; m = fastnn.io.from_bytes(sys.stdin.buffer.read()); "
            "x = np.random.default_rng(0).normal(size=(60, 6)).astype(np.float32); "
            "sys.stdout.buffer.write(m.predict(x).tobytes())")
    out = subprocess.run([sys.executable, "-c", code], input=io.to_bytes(model), capture_output=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": ":".join(sys.path)}).stdout
    np.testing.assert_array_equal(np.frombuffer(out, np.float32).reshape(60, 3), model.predict(X))
