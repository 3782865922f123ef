"""State dicts exchanged with PyTorch (torch.save / torch.load(weights_only=True)) and
safetensors files, both ways; torch and safetensors are imported only when called."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import io, nn


def models_pair():
    torch = pytest.importorskip("torch")
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    rng = np.random.default_rng(0)
    for name, get in model._named_states():  # running statistics off their initial values
        get()[...] = rng.uniform(0.5, 1.5, size=get().shape)
    twin = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return torch, model, twin.eval()


def test_torch_save_and_weights_only_load_into_the_torch_twin(tmp_path):
    torch, model, twin = models_pair()
    torch.save(io.to_torch_state_dict(model), tmp_path / "m.pt")
    twin.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))  # strict: every key, BN's counter too
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(twin(torch.tensor(x)).detach().numpy(), model.predict(x), rtol=1e-5, atol=1e-6)
    sd = io.to_torch_state_dict(model)
    sd["0.weight"][0, 0] = 123.0  # a copy: the model is not changed through it
    assert model[0].weight.data[0, 0] != 123.0


def test_from_torch_state_dict_loads_the_twin_into_fastnn():
    torch, model, twin = models_pair()
    twin.train()
    twin(torch.randn(16, 5))  # running statistics move
    twin.eval()
    assert io.from_torch_state_dict(model, twin.state_dict()) is model
    x = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), twin(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    model64 = fastnn.io.from_torch_state_dict(model.double(), twin.state_dict())  # converted to the model's dtype
    assert model64[0].weight.dtype == np.float64
    with pytest.raises(KeyError, match="missing keys"):
        io.from_torch_state_dict(model, {"0.weight": twin[0].weight})
    with pytest.raises(ValueError, match="shape"):
        io.from_torch_state_dict(model, {**twin.state_dict(), "0.weight": torch.zeros(2, 2)})
    with pytest.raises(TypeError, match="mapping"):
        io.from_torch_state_dict(model, [1, 2])


def test_safetensors_both_ways(tmp_path):
    torch, model, twin = models_pair()
    st_torch = pytest.importorskip("safetensors.torch")
    io.save_safetensors(tmp_path / "m.safetensors", model)
    twin.load_state_dict(st_torch.load_file(tmp_path / "m.safetensors"))
    x = np.random.default_rng(3).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(twin(torch.tensor(x)).detach().numpy(), model.predict(x), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        twin[0].weight.mul_(2)
    st_torch.save_file(twin.state_dict(), tmp_path / "t.safetensors")
    io.load_safetensors(tmp_path / "t.safetensors", model)
    np.testing.assert_allclose(model[0].weight.data, twin[0].weight.detach().numpy())


def test_fastnn_imports_neither_torch_nor_safetensors():
    code = "import sys, fastnn; print('torch' in sys.modules, 'safetensors' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout
    assert out.split() == ["False", "False"]


def test_a_missing_optional_package_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match="to_torch_state_dict needs the optional package 'torch'"):
        io.to_torch_state_dict(nn.Linear(2, 2))
    with pytest.raises(ImportError, match="save_safetensors needs the optional package 'safetensors'"):
        io.save_safetensors("unused.safetensors", nn.Linear(2, 2))
