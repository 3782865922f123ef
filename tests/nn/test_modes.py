"""Per-module train/eval modes (PyTorch's module.training): a BatchNorm in eval mode inside a
training model, a Dropout training inside an eval model; fusions follow the modes; evaluate and
predict run everything in eval mode; fit trains everything."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from tests.conftest import assert_sum_close, network_terms


def _model(dtype=np.float64, p=0.5):
    fastnn.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 8, dtype=dtype), nn.BatchNorm1d(8, dtype=dtype), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(8, 3, dtype=dtype))


def _data(n=16, dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype(dtype), rng.normal(size=(n, 3)).astype(dtype)


def _one_by_one(model, x):
    """The model's children called one at a time: each runs in its own mode by construction."""
    for m in model:
        x = m(x)
    return x


def test_batchnorm_in_eval_mode_inside_a_training_model():
    model = _model(p=0.0)
    x, g = _data()
    bn = model[1]
    bn.running_mean[...] = 0.3  # noqa: the running statistics are what eval mode must use
    bn.running_var[...] = 2.0
    bn.eval()
    assert model.training and not bn.training
    assert model.execution_plan == ["Linear", "BatchNorm1d+relu+dropout", "Linear"]
    y = model(x)
    terms, k = network_terms(model, x)
    assert_sum_close(y, _one_by_one(model, x), terms, k)
    h = x @ np.asarray(model[0].weight).T + np.asarray(model[0].bias)
    z = (h - 0.3) / np.sqrt(2.0 + bn.eps) * np.asarray(bn.weight) + np.asarray(bn.bias)
    assert_sum_close(y, np.maximum(z, 0) @ np.asarray(model[4].weight).T + np.asarray(model[4].bias), terms, k)
    np.testing.assert_array_equal(bn.running_mean, np.full(8, 0.3))  # eval mode: no update
    model.backward(g)  # differentiates through the running statistics
    assert np.all(np.isfinite(model.flat_grad()))


def test_fusion_follows_the_modes():
    model = _model(p=0.5)
    x, _ = _data()
    assert model.execution_plan == ["Linear", "BatchNorm1d+relu+dropout", "Linear"]
    model[1].eval()  # BatchNorm in eval mode, Dropout training: not one fused layer any more
    model(x)
    assert model.execution_plan == ["Linear", "BatchNorm1d+relu", "Dropout", "Linear"]
    model[1].train()
    model(x)
    assert model.execution_plan == ["Linear", "BatchNorm1d+relu+dropout", "Linear"]


def test_dropout_training_inside_an_eval_model():
    model = _model(p=0.5)
    x, _ = _data(n=64)
    model.eval()
    clean = model(x)
    np.testing.assert_array_equal(model(x), clean)  # eval: deterministic
    model[3].train()
    noisy = model(x)
    assert not np.allclose(noisy, clean)
    hidden = model[2](model[1](model[0](x)))  # the Dropout's input, eval-mode BatchNorm
    dropped = model[3](hidden)
    zeros = (dropped == 0) & (hidden != 0)
    assert 0.35 < zeros.sum() / (hidden != 0).sum() < 0.65  # about p of them dropped
    np.testing.assert_allclose(dropped[~zeros], 2 * hidden[~zeros])  # the others scaled by 1/(1-p)


def test_evaluate_and_predict_run_every_module_in_eval_mode():
    model = _model(p=0.5)
    x, _ = _data(n=40)
    y = np.zeros(40, np.int64)
    model.eval()
    expected = model(x)
    model[1].train()
    model[3].train()
    before = np.array(model[1].running_mean)
    assert_sum_close(fastnn.predict(model, x), expected, *network_terms(model, x))
    assert fastnn.evaluate(model, x, y)["loss"] == pytest.approx(fastnn.evaluate(model.eval(), x, y)["loss"],
                                                                  rel=1e-12)
    np.testing.assert_array_equal(model[1].running_mean, before)


def test_fit_trains_every_module():
    """As Keras and PyTorch Lightning: fit puts the whole model in training mode."""
    model = _model(p=0.0)
    x, _ = _data(n=32)
    model[1].eval()
    before = np.array(model[1].running_mean)
    fastnn.fit(model, x, np.zeros(32, np.int64), epochs=1, batch_size=8, verbose=0)
    assert all(m.training for m in model.modules())
    assert not np.array_equal(model[1].running_mean, before)


def test_a_module_used_twice_runs_both_uses_in_its_mode():
    drop = nn.Dropout(0.5)
    fastnn.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), drop, nn.Linear(8, 8), nn.Tanh(), drop, nn.Linear(8, 3))
    x, _ = _data(dtype=np.float32)
    model.eval()
    clean = model(x)
    model.train()
    drop.eval()  # both uses of the one Dropout object
    np.testing.assert_array_equal(model(x), clean)


def test_modes_survive_a_dtype_change():
    model = _model(dtype=np.float32, p=0.5)
    model.eval()
    model[3].train()
    model.double()
    x, _ = _data(n=64)
    a, b = model(x), model(x)
    assert not np.array_equal(a, b)  # the Dropout still trains (a new mask each call)
    model[3].eval()
    np.testing.assert_array_equal(model(x), model(x))
