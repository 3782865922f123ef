"""Sequential runs BatchNorm -> ReLU (-> Dropout) as one fused layer: the plan shows it, and the
numbers are those of the separate layers.

The fused kernels do the same floating-point operations in the same order as the separate ones
(the ReLU and dropout are applied to the value the normalize pass computes; their derivatives to
the gradient BN's backward reads), so fused and unfused models are compared for exact equality.
An Identity after the BatchNorm breaks the fusion and gives the unfused model.
The exact comparisons use models without Linear layers: Linear's GEMMs round differently
depending on where their buffers sit in memory (two instances of the same Linear can differ in
the last bit), which would hide nothing about the fusion but make bit-equality a coin toss.
With Linears (fit), fused and unfused agree to float64 rounding.
"""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn import reference as R
from fastnn.reference.batchnorm_activation import KEPT, RELU_PASS
from tests.conftest import DTYPES, assert_close, assert_gradient, assert_sum_close, num_threads, random_array
from tests.reference.test_batchnorm import backward_terms, forward_terms

BN = {"1d": nn.BatchNorm1d, "2d": nn.BatchNorm2d}


def _model(kind, C, S, dtype, dropout, fuse, **bn_kwargs):
    """BatchNorm(C) -> ReLU [-> Dropout] -> Flatten."""
    layers = [BN[kind](C, dtype=dtype, **bn_kwargs)]
    if not fuse:
        layers.append(nn.Identity())
    layers.append(nn.ReLU())
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)


def _same_streams(fused, unfused):
    """Unfused gets fused's parameters, and its Dropouts the random streams (salts) of fused's."""
    unfused.flat_parameters()[...] = fused.flat_parameters()
    drops = [[m for m in model if isinstance(m, nn.Dropout)] for model in (fused, unfused)]
    for a, b in zip(*drops):
        b._layer.salt = a._layer.salt


def _pair(rng, kind, C, S, dtype, dropout, **bn_kwargs):
    fused = _model(kind, C, S, dtype, dropout, True, **bn_kwargs)
    unfused = _model(kind, C, S, dtype, dropout, False, **bn_kwargs)
    for p in fused[0].parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape) if p.name == "weight" else rng.uniform(-0.5, 0.5, p.shape)
    _same_streams(fused, unfused)
    return fused, unfused


def _run(model, x, g, seed):
    fastnn.manual_seed(seed)
    model.zero_grad()
    y = model(x)
    return y, model.backward(g), model.flat_grad().copy(), {k: v.copy() for k, v in model[0].state_dict().items()}


def _assert_same(fused, unfused, x, g, seed):
    yf, dxf, gf, sf = _run(fused, x, g, seed)
    yu, dxu, gu, su = _run(unfused, x, g, seed)
    np.testing.assert_array_equal(yf, yu)
    np.testing.assert_array_equal(dxf, dxu)
    np.testing.assert_array_equal(gf, gu)
    assert sf.keys() == su.keys()
    for k in sf:
        np.testing.assert_array_equal(sf[k], su[k], err_msg=k)


SHAPES = [("1d", (16, 1)), ("1d", (9, 7)), ("1d", (5, 33)), ("1d", (4, 129)), ("1d", (3, 7, 5)), ("2d", (2, 7, 3, 4)),
          ("2d", (3, 33, 2, 2))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,shape", SHAPES)
@pytest.mark.parametrize("dropout", [None, 0.0, 0.5])
def test_fused_equals_unfused_in_training_and_eval(rng, dtype, kind, shape, dropout):
    C, S = shape[1], int(np.prod(shape[2:], dtype=np.int64))
    fused, unfused = _pair(rng, kind, C, S, dtype, dropout)
    assert len(fused._layer.execution_plan) == 2 and len(unfused._layer.execution_plan) > 3
    x, g = random_array(rng, shape, dtype), random_array(rng, (shape[0], C * S), dtype)
    for step in range(3):  # the running statistics move: later steps see the updated ones
        _assert_same(fused, unfused, x + step, g, seed=step)
    fused.eval()
    unfused.eval()
    _assert_same(fused, unfused, x, g, seed=7)
    xe = random_array(rng, (1,) + shape[1:], dtype)  # eval: a batch of one is fine
    _assert_same(fused, unfused, xe, g[:1], seed=8)


@pytest.mark.parametrize("bn_kwargs", [dict(affine=False), dict(track_running_stats=False), dict(momentum=0.5, eps=1e-3)])
@pytest.mark.parametrize("dropout", [None, 0.3])
def test_fused_equals_unfused_with_batchnorm_options(rng, bn_kwargs, dropout):
    fused, unfused = _pair(rng, "1d", 7, 1, np.float64, dropout, **bn_kwargs)
    x, g = random_array(rng, (6, 7), np.float64), random_array(rng, (6, 7), np.float64)
    _assert_same(fused, unfused, x, g, seed=1)
    fused.eval()
    unfused.eval()
    _assert_same(fused, unfused, x, g, seed=2)  # without running statistics: batch statistics, no dropout


def test_frozen_batchnorm_gets_no_gradient(rng):
    fused, unfused = _pair(rng, "1d", 7, 1, np.float32, 0.5)
    fused[0].requires_grad_(False)
    unfused[0].requires_grad_(False)
    x, g = random_array(rng, (6, 7), np.float32), random_array(rng, (6, 7), np.float32)
    _assert_same(fused, unfused, x, g, seed=1)
    assert not fused[0].weight.grad.any() and not fused[0].bias.grad.any()


@pytest.mark.parametrize("dropout", [None, 0.5])
def test_batch_of_one_in_training_raises_like_unfused(rng, dropout):
    fused, unfused = _pair(rng, "1d", 7, 1, np.float32, dropout)
    x = random_array(rng, (1, 7), np.float32)
    messages = []
    for model in (fused, unfused):
        with pytest.raises(ValueError, match=r"\[BatchNorm1d\] Expected more than 1 value per channel when training") as e:
            model(x)
        messages.append(str(e.value))
    assert messages[0] == messages[1]


def test_execution_plan_shows_the_fusion():
    def plan(*layers):
        return nn.Sequential(*layers)._layer.execution_plan

    mlp_l = plan(nn.Linear(784, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 256),
                 nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10))
    assert mlp_l == ["Linear", "BatchNorm1d+relu+dropout", "Linear", "BatchNorm1d+relu+dropout", "Linear"]
    mlp_s = plan(nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(),
                 nn.Linear(32, 10))
    assert mlp_s == ["Linear", "BatchNorm1d+relu", "Linear", "BatchNorm1d+relu", "Linear"]
    assert plan(nn.BatchNorm2d(3), nn.ReLU()) == ["BatchNorm2d+relu"]
    assert plan(nn.BatchNorm1d(3), nn.ReLU(), nn.Dropout(0.0)) == ["BatchNorm1d+relu+dropout"]
    assert plan(nn.Linear(3, 3), nn.ReLU(), nn.Dropout(0.5)) == ["Linear+relu", "Dropout"]
    # Not fused: other activations, dropout before the ReLU, anything in between.
    assert plan(nn.BatchNorm1d(3), nn.Tanh()) == ["BatchNorm1d", "Tanh"]
    assert plan(nn.BatchNorm1d(3), nn.LeakyReLU(0.1)) == ["BatchNorm1d", "LeakyReLU"]
    assert plan(nn.BatchNorm1d(3), nn.Dropout(0.5), nn.ReLU()) == ["BatchNorm1d", "Dropout", "ReLU"]
    assert plan(nn.BatchNorm1d(3), nn.Identity(), nn.ReLU()) == ["BatchNorm1d", "Identity", "ReLU"]
    assert plan(nn.BatchNorm1d(3)) == ["BatchNorm1d"]


def test_nested_sequential_uses_the_outer_random_streams(rng):
    """The outer Sequential re-assigns the salts after the inner one planned its fusion."""
    def build(fuse):
        inner = [nn.BatchNorm1d(8)] + ([] if fuse else [nn.Identity()]) + [nn.ReLU(), nn.Dropout(0.5)]
        return nn.Sequential(nn.Dropout(0.2), nn.Sequential(*inner), nn.Dropout(0.2))

    fused, unfused = build(True), build(False)
    assert fused[1]._layer.execution_plan == ["BatchNorm1d+relu+dropout"]
    fused[1][0].weight.data[...] = rng.uniform(0.5, 1.5, 8)
    unfused.flat_parameters()[...] = fused.flat_parameters()
    for a, b in ((fused[0], unfused[0]), (fused[1][2], unfused[1][3]), (fused[2], unfused[2])):
        b._layer.salt = a._layer.salt
    x, g = random_array(rng, (10, 8), np.float32), random_array(rng, (10, 8), np.float32)
    fastnn.manual_seed(1)
    y = fused(x)
    fastnn.manual_seed(1)
    np.testing.assert_array_equal(y, unfused(x))
    np.testing.assert_array_equal(fused.backward(g), unfused.backward(g))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 7), (4, 33, 3)])
@pytest.mark.parametrize("p", [0.0, 0.5])
def test_fused_layer_matches_reference(rng, dtype, shape, p):
    C = shape[1]
    model = nn.Sequential(nn.BatchNorm1d(C, dtype=dtype), nn.ReLU(), nn.Dropout(p))
    assert model._layer.execution_plan == ["BatchNorm1d+relu+dropout"]
    bn = model[0]
    bn.weight.data[...] = rng.uniform(0.5, 1.5, C)
    bn.bias.data[...] = rng.uniform(-0.5, 0.5, C)
    w, b = bn.weight.data.copy(), bn.bias.data.copy()
    x, g = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    # The layer's dropout stream: the key of (model seed, Dropout's salt), drawn at `step`.
    seed, step = 12, 34
    key = int(R.rng.stream_key(seed, model[2]._layer.salt))
    y_r, mean, invstd, mask = R.batch_norm_relu_forward(x, w, b, rm, rv, True, 0.1, 1e-5, p, key, step)
    model.zero_grad()
    y = model._layer.forward(x, True, seed, step)
    terms, n = forward_terms(x, w, b, 0.1, np.zeros(C))
    keep = np.where((mask & KEPT) != 0, 1 / (1 - p), 0.0)  # ReLU's slope <= 1; dropout scales by 1 / (1 - p)
    assert_sum_close(y, y_r, terms["y"] * keep, n, dtype)
    assert_sum_close(bn.running_mean, rm, terms["running_mean"], n + 2, dtype)
    assert_sum_close(bn.running_var, rv, rv, n + 2, dtype)  # a sum of squares
    dx_r, dw_r, db_r = R.batch_norm_relu_backward(g, x, w, mean, invstd, mask, True, p)
    (tx, tw, tb), n = backward_terms(g * keep * ((mask & RELU_PASS) != 0), x, w, mean, invstd)
    assert_sum_close(model._layer.backward(g, True), dx_r, tx, n, dtype)
    assert_sum_close(bn.weight.grad, dw_r, tw, n, dtype)
    assert_sum_close(bn.bias.grad, db_r, tb, n, dtype)
    y_eval = model._layer.forward(x, False, seed, step)
    scale = np.abs(w) / np.sqrt(rv.astype(np.float64) + 1e-5)
    per_c = (1, -1) + (1,) * (x.ndim - 2)
    t = scale.reshape(per_c) * np.abs(x) + (np.abs(b) + np.abs(rm) * scale).reshape(per_c)
    assert_sum_close(y_eval, R.batch_norm_relu_forward(x, w, b, rm, rv, False)[0], t, 3, dtype)  # scale x + shift


@pytest.mark.parametrize("training", [True, False])
def test_sequential_gradient_matches_finite_differences(rng, training):
    """float64 Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear; the dropout mask is fixed by (seed, step)."""
    fastnn.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 6, dtype=np.float64), nn.BatchNorm1d(6, dtype=np.float64), nn.ReLU(),
                          nn.Dropout(0.3), nn.Linear(6, 3, dtype=np.float64))
    assert model._layer.execution_plan == ["Linear", "BatchNorm1d+relu+dropout", "Linear"]
    model[1].weight.data[...] = rng.uniform(0.5, 1.5, 6)
    model[1].bias.data[...] = rng.uniform(-0.5, 0.5, 6)
    model[1].running_var[...] = rng.uniform(0.5, 2.0, 6)
    x, u = rng.standard_normal((7, 5)), rng.standard_normal((7, 3))
    layer = model._layer

    def loss():
        return float(np.sum(u * layer.forward(x, training, 3, 5)))

    model.zero_grad()
    layer.forward(x, training, 3, 5)
    dx = layer.backward(u, True)
    assert_gradient(loss, x, dx, rtol=1e-5, atol=1e-7)
    for p in model.parameters():
        assert_gradient(loss, p.data, p.grad.copy(), rtol=1e-5, atol=1e-7)


def test_fit_history_is_the_same_with_and_without_fusion():
    """float64, so that the Linears' last-bit differences (see the module docstring) stay invisible."""
    def build(fuse):
        fastnn.manual_seed(4)
        f64 = dict(dtype=np.float64)
        layers = [nn.Linear(10, 16, **f64), nn.BatchNorm1d(16, **f64)] + ([] if fuse else [nn.Identity()])
        layers += [nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 8, **f64), nn.BatchNorm1d(8, **f64)]
        layers += ([] if fuse else [nn.Identity()]) + [nn.ReLU(), nn.Linear(8, 3, **f64)]
        return nn.Sequential(*layers)

    fused, unfused = build(True), build(False)
    assert fused._layer.execution_plan == ["Linear", "BatchNorm1d+relu+dropout", "Linear", "BatchNorm1d+relu", "Linear"]
    _same_streams(fused, unfused)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 10))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    histories = []
    for model in (fused, unfused):
        fastnn.manual_seed(9)
        h = fastnn.fit(model, X, y, optimizer=fastnn.optim.Adam(model.parameters(), lr=1e-2), epochs=3,
                       batch_size=16, validation_data=(X[:32], y[:32]), seed=1, verbose=0)
        histories.append(h.history)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-10, err_msg=key)
    for key in ("accuracy", "val_accuracy", "lr"):
        assert histories[0][key] == histories[1][key], key
    assert histories[0]["loss"][-1] < histories[0]["loss"][0]
    np.testing.assert_allclose(fused.flat_parameters(), unfused.flat_parameters(), rtol=1e-9, atol=1e-12)
    running = [[v for k, v in model.state_dict().items() if "running" in k] for model in (fused, unfused)]
    for a, b in zip(*running):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind,shape", [("1d", (256, 1024)), ("2d", (16, 32, 16, 16))])
@pytest.mark.parametrize("dropout", [None, 0.5])
def test_fused_layer_gives_the_same_results_with_one_and_two_threads(rng, kind, shape, dropout):
    C, S = shape[1], int(np.prod(shape[2:], dtype=np.int64))
    model = _model(kind, C, S, np.float32, dropout, True)
    model[0].weight.data[...] = rng.uniform(0.5, 1.5, C)
    model[0].bias.data[...] = rng.uniform(-0.5, 0.5, C)
    x, g = random_array(rng, shape, np.float32), random_array(rng, (shape[0], C * S), np.float32)
    results = []
    for n in (1, 2):
        with num_threads(n):
            fresh = _model(kind, C, S, np.float32, dropout, True)
            fresh.load_state_dict(model.state_dict())
            run = _run(fresh, x, g, seed=3)
            fresh.eval()
            results.append(run + _run(fresh, x, g, seed=4))
    for one, two in zip(*results):
        if isinstance(one, dict):
            for k in one:
                np.testing.assert_array_equal(one[k], two[k], err_msg=k)
        else:
            np.testing.assert_array_equal(one, two)


def test_execution_plan_is_public_on_sequential():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3), nn.ReLU())
    assert model.execution_plan == ["Linear", "BatchNorm1d+relu+dropout", "Linear+relu"]
