"""nn layers (handles on C++ layers) against the NumPy references and PyTorch."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn import reference as R
from tests.conftest import (
    DTYPES, TOL, assert_close, assert_gradient, assert_model_gradient, assert_sum_close, random_array,
    requires_torch,
)
from tests.reference.test_activations import prelu_weight_terms
from tests.reference.test_batchnorm import backward_terms as bn_backward_terms
from tests.reference.test_batchnorm import forward_terms as bn_forward_terms
from tests.reference.test_softmax import softmax_terms

POINTWISE = [
    (nn.Sigmoid, {}, lambda x: R.sigmoid_forward(x), lambda g, x, y: R.sigmoid_backward(g, y)),
    (nn.Tanh, {}, lambda x: R.tanh_forward(x), lambda g, x, y: R.tanh_backward(g, y)),
    (nn.ReLU, {}, lambda x: R.relu_forward(x), lambda g, x, y: R.relu_backward(g, y)),
    (nn.LeakyReLU, {"negative_slope": 0.2}, lambda x: R.leaky_relu_forward(x, 0.2),
     lambda g, x, y: R.leaky_relu_backward(g, x, 0.2)),
    (nn.ELU, {"alpha": 0.7}, lambda x: R.elu_forward(x, 0.7), lambda g, x, y: R.elu_backward(g, x, 0.7)),
    (nn.SELU, {}, lambda x: R.selu_forward(x), lambda g, x, y: R.selu_backward(g, x)),
    (nn.Softmax, {}, lambda x: R.softmax_forward(x), lambda g, x, y: R.softmax_backward(g, y)),
    (nn.LogSoftmax, {}, lambda x: R.log_softmax_forward(x), lambda g, x, y: R.log_softmax_backward(g, y)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 7), (33, 129), (4, 3, 5, 5)])
@pytest.mark.parametrize("cls,kwargs,fwd,bwd", POINTWISE, ids=lambda v: getattr(v, "__name__", ""))
def test_activation_modules_match_reference(rng, dtype, shape, cls, kwargs, fwd, bwd):
    m = cls(**kwargs, dtype=dtype)
    x, g = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    y = m(x)
    if cls in (nn.Softmax, nn.LogSoftmax):  # sums over the last axis
        op = "softmax" if cls is nn.Softmax else "log_softmax"
        ty, tg, k = softmax_terms(op, x, fwd(x), g)
        assert_sum_close(y, fwd(x), ty, k, rtol=TOL[dtype]["rtol"])
        assert_sum_close(m.backward(g), bwd(g, x, fwd(x)), tg, k)
        return
    assert_close(y, fwd(x), scale=4)
    assert_close(m.backward(g), bwd(g, x, fwd(x)), scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_parameters,shape", [(1, (5, 7)), (3, (4, 3)), (3, (2, 3, 4, 5))])
def test_prelu_module(rng, dtype, num_parameters, shape):
    m = nn.PReLU(num_parameters, dtype=dtype)
    m.weight.data[...] = rng.uniform(0.1, 0.5, num_parameters)
    x, g = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    assert_close(m(x), R.prelu_forward(x, m.weight.data))
    dx = m.backward(g)
    want_dx, want_dw = R.prelu_backward(g, x, m.weight.data)
    assert_close(dx, want_dx)
    terms, k = prelu_weight_terms(g, x, m.weight.data)
    assert_sum_close(m.weight.grad, want_dw, terms, k)
    m.backward(g)  # parameter gradients accumulate
    assert_sum_close(m.weight.grad, 2 * want_dw, 2 * terms, 2 * k)


def test_rrelu_eval_and_training(rng):
    m = nn.RReLU(0.1, 0.3)
    x = random_array(rng, (64, 50), np.float32)
    m.eval()
    assert_close(m(x), np.where(x >= 0, x, 0.2 * x))
    m.train()
    y = m(x)
    slope = y[x < 0] / x[x < 0]
    assert np.all((slope >= 0.1 - 1e-6) & (slope <= 0.3 + 1e-6)) and slope.std() > 0.03
    g = random_array(rng, x.shape, np.float32)
    assert_close(m.backward(g), g * np.where(x >= 0, 1, y / np.where(x == 0, 1, x)), scale=10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxout_module(rng, dtype):
    m = nn.Maxout(3, dtype=dtype)
    x, g = random_array(rng, (5, 12), dtype), random_array(rng, (5, 4), dtype)
    y, idx = R.maxout_forward(x, 3)
    assert_close(m(x), y)
    assert_close(m.backward(g), R.maxout_backward(g, idx, 3))
    with pytest.raises(ValueError, match=r"\[Maxout\] input must be \(N, C \* 3\), got \(5, 13\)"):
        m(random_array(rng, (5, 13), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (16, 6)), (nn.BatchNorm1d, (8, 6, 5)), (nn.BatchNorm2d, (4, 6, 5, 3))])
def test_batchnorm_module_train_and_eval(rng, dtype, cls, shape):
    m = cls(6, dtype=dtype)
    m.weight.data[...] = rng.uniform(0.5, 1.5, 6)
    m.bias.data[...] = rng.standard_normal(6)
    x, g = random_array(rng, shape, dtype), random_array(rng, shape, dtype)
    rm, rv = np.zeros(6, dtype), np.ones(6, dtype)
    terms, n = bn_forward_terms(x, m.weight.data, m.bias.data, 0.1, rm)
    y_ref, mean, invstd = R.batch_norm_forward(x, m.weight.data, m.bias.data, rm, rv, True, 0.1, 1e-5)
    assert_sum_close(m(x), y_ref, terms["y"], n)
    assert_sum_close(m.running_mean, rm, terms["running_mean"], n + 2)
    assert_sum_close(m.running_var, rv, rv, n + 2)  # a sum of squares
    dx, dw, db = R.batch_norm_backward(g, x, m.weight.data, mean, invstd, True)
    (tx, tw, tb), n = bn_backward_terms(g, x, m.weight.data, mean, invstd)
    assert_sum_close(m.backward(g), dx, tx, n)
    assert_sum_close(m.weight.grad, dw, tw, n)
    assert_sum_close(m.bias.grad, db, tb, n)
    m.eval()
    y_eval = R.batch_norm_forward(x, m.weight.data, m.bias.data, rm, rv, False)[0]
    scale = np.abs(m.weight.data) / np.sqrt(rv.astype(np.float64) + 1e-5)
    per_c = (1, -1) + (1,) * (x.ndim - 2)
    t = scale.reshape(per_c) * np.abs(x) + (np.abs(m.bias.data) + np.abs(rm) * scale).reshape(per_c)
    assert_sum_close(m(x), y_eval, t, 3)  # scale x + shift


def test_batchnorm_rejects_wrong_input(rng):
    with pytest.raises(ValueError, match=r"\[BatchNorm1d\] expected input \(N, C\) or \(N, C, L\) with C = 6, got \(4, 5\)"):
        nn.BatchNorm1d(6)(random_array(rng, (4, 5), np.float32))
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training"):
        nn.BatchNorm1d(6)(random_array(rng, (1, 6), np.float32))
    with pytest.raises(ValueError, match=r"\[BatchNorm2d\] expected input \(N, C, H, W\)"):
        nn.BatchNorm2d(6)(random_array(rng, (4, 6), np.float32))
    with pytest.raises(ValueError, match="eps must be positive"):
        nn.BatchNorm1d(3, eps=0)


def test_dropout_module(rng):
    fastnn.manual_seed(7)
    m = nn.Dropout(0.5)
    x = random_array(rng, (128, 256), np.float32) + 3.0  # no zeros in x
    y = m(x)
    kept = y != 0
    assert 0.45 < kept.mean() < 0.55
    assert_close(y[kept], 2 * x[kept])
    g = random_array(rng, x.shape, np.float32)
    assert_close(m.backward(g), np.where(kept, 2 * g, 0))
    assert not np.array_equal(m(x) != 0, kept)  # a new step draws a new mask
    m.eval()
    assert_close(m(x), x)
    assert_close(m.backward(g), g)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="p must be in"):
            nn.Dropout(bad)


def test_dropout_masks_follow_the_seed(rng):
    x = np.ones((32, 64), np.float32)
    m = nn.Dropout(0.3)
    fastnn.manual_seed(3)
    a = [m(x).copy() for _ in range(2)]
    fastnn.manual_seed(3)
    b = [m(x).copy() for _ in range(2)]
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and not np.array_equal(a[0], a[1])


def test_two_dropout_layers_draw_different_masks():
    x = np.ones((16, 64), np.float32)
    model = nn.Sequential(nn.Dropout(0.5), nn.Flatten(), nn.Dropout(0.5))
    model(x)
    first, second = model[0], model[2]
    m1 = first._layer.forward(x, True, 1, 1) != 0
    m2 = second._layer.forward(x, True, 1, 1) != 0
    assert not np.array_equal(m1, m2)


def test_flatten_and_identity(rng):
    x = random_array(rng, (2, 3, 4, 5), np.float32)
    f = nn.Flatten()
    assert_close(f(x), x.reshape(2, 60))
    assert f.backward(np.ones((2, 60), np.float32)).shape == (2, 3, 4, 5)
    assert_close(nn.Flatten(2)(x), x.reshape(2, 3, 20))
    assert_close(nn.Identity()(x), x)


class Scale(nn.Module):
    """A layer written in Python, with one parameter-free op."""

    def forward(self, x):
        self.x = x
        return 3 * x

    def backward(self, g):
        return 3 * g


def _mlp(dtype, rng, with_python_layer=False):
    layers = [nn.Flatten(), nn.BatchNorm1d(12, dtype=dtype), nn.Tanh(dtype=dtype), nn.PReLU(dtype=dtype)]
    if with_python_layer:
        layers.append(Scale())
    layers += [nn.ELU(dtype=dtype), nn.LogSoftmax(dtype=dtype)]
    model = nn.Sequential(*layers)
    for p in model.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape)
    return model


@pytest.mark.parametrize("with_python_layer", [False, True])
def test_sequential_gradient_matches_finite_differences(rng, with_python_layer):
    model = _mlp(np.float64, rng, with_python_layer)
    x = rng.standard_normal((5, 3, 4))
    w = rng.standard_normal((5, 12))  # random upstream gradient: loss = sum(w * model(x))

    def loss():
        return float(np.sum(w * model(x)))

    model.zero_grad()
    model(x)
    dx = model.backward(w)
    assert_gradient(loss, x, dx, rtol=1e-5, atol=1e-7)
    for p in model.parameters():
        analytic = p.grad.copy()
        assert_gradient(loss, p.data, analytic, rtol=1e-5, atol=1e-7)


def test_parameters_share_one_flat_buffer(rng):
    a, b = nn.PReLU(3), nn.BatchNorm1d(3)
    a.weight.data[...] = [0.1, 0.2, 0.3]
    model = nn.Sequential(a, b)
    flat = model.flat_parameters()
    assert flat.size == 3 + 6
    assert np.shares_memory(flat, a.weight.data) and np.shares_memory(flat, b.weight.data)
    assert_close(a.weight.data, np.array([0.1, 0.2, 0.3], np.float32))  # values moved with the parameters
    flat[:3] = 0.5  # the C++ layer reads the new memory
    x = -np.ones((4, 3), np.float32)
    assert_close(a(x), -0.5 * np.ones((4, 3), np.float32))
    model.zero_grad()
    assert not model.flat_grad().any()


def test_frozen_layers_get_no_gradient(rng):
    model = _mlp(np.float64, rng)
    model[1].requires_grad_(False)
    model.zero_grad()
    x = rng.standard_normal((5, 3, 4))
    model.backward(np.ones_like(model(x)))
    assert not model[1].weight.grad.any() and not model[1].bias.grad.any()
    assert model[3].weight.grad.any()


def test_state_dict_round_trip_and_errors(rng):
    model = _mlp(np.float32, rng)
    model(random_array(rng, (8, 3, 4), np.float32))  # updates running statistics
    sd = model.state_dict()
    assert list(sd) == ["1.weight", "1.bias", "1.running_mean", "1.running_var", "3.weight"]
    other = _mlp(np.float32, np.random.default_rng(99))
    other.load_state_dict(sd)
    for k, v in other.state_dict().items():
        assert np.array_equal(v, sd[k]), k
    bad = dict(sd)
    bad["1.weight"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"'1.weight' has shape \(5,\), the model expects \(12,\)"):
        other.load_state_dict(bad)
    with pytest.raises(KeyError, match="missing keys"):
        other.load_state_dict({k: v for k, v in sd.items() if k != "3.weight"})
    nan = dict(sd)
    nan["3.weight"] = np.array([np.nan], np.float32)
    with pytest.raises(ValueError, match="NaN"):
        other.load_state_dict(nan)
    assert np.array_equal(other.state_dict()["1.bias"], sd["1.bias"])  # a rejected dict changed nothing


def test_module_input_errors(rng):
    m = nn.ReLU()
    assert m(-np.ones((2, 2))).dtype == np.float64  # parameter-free layers follow the input's precision
    with pytest.raises(TypeError, match=r"x is float64 but the model is float32"):
        nn.PReLU()(np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"x is int64 but the model is float32"):
        nn.PReLU()(np.ones((2, 2), np.int64))
    with pytest.raises(TypeError, match="must be a numpy.ndarray, got list"):
        m([[1.0]])
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.Tanh().backward(np.ones((2, 2), np.float32))
    m(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"grad_out must have the shape of the last output \(2, 3\), got \(3, 2\)"):
        m.backward(np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="different dtypes"):
        nn.Sequential(nn.PReLU(dtype=np.float32), nn.PReLU(dtype=np.float64))
    with pytest.raises(TypeError, match="is a int, not a fastnn.nn.Module"):
        nn.Sequential(nn.ReLU(), 3)


def test_to_double_converts_parameters_and_statistics(rng):
    model = _mlp(np.float32, rng)
    x = random_array(rng, (6, 3, 4), np.float32)
    y32 = model(x)
    before = model.state_dict()
    model.double()
    assert all(p.dtype == np.float64 for p in model.parameters()) and model.flat_parameters().dtype == np.float64
    for k, v in model.state_dict().items():
        assert v.dtype == np.float64 and np.array_equal(v, before[k].astype(np.float64)), k
    model.eval()
    model.train()
    y64 = model(x.astype(np.float64))
    np.testing.assert_allclose(y64, y32, rtol=1e-4, atol=1e-5)


@requires_torch
def test_state_dict_loads_into_torch_and_back(rng):
    import torch

    model = nn.Sequential(nn.BatchNorm1d(6, dtype=np.float64), nn.PReLU(6, dtype=np.float64), nn.Tanh(dtype=np.float64))
    for p in model.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape)
    x = rng.standard_normal((10, 6))
    model(x)  # running stats move
    tmodel = torch.nn.Sequential(torch.nn.BatchNorm1d(6), torch.nn.PReLU(6), torch.nn.Tanh()).double()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=False)
    tmodel.eval()
    model.eval()
    np.testing.assert_allclose(model(x), tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
    back = nn.Sequential(nn.BatchNorm1d(6, dtype=np.float64), nn.PReLU(6, dtype=np.float64), nn.Tanh(dtype=np.float64))
    back.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})  # includes num_batches_tracked
    back.eval()
    np.testing.assert_allclose(back(x), model(x), rtol=1e-12)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Sigmoid, nn.Tanh, lambda dtype: nn.LeakyReLU(0.1, dtype=dtype)])
def test_linear_activation_pairs_are_fused_and_exact(rng, act):
    fastnn.manual_seed(11)
    lin = nn.Linear(9, 7, dtype=np.float64)
    fused = nn.Sequential(lin, act(dtype=np.float64), nn.Linear(7, 3, dtype=np.float64))
    plan = fused._layer.execution_plan
    assert plan[0].startswith("Linear+") and len(plan) == 2
    x, w = rng.standard_normal((6, 9)), rng.standard_normal((6, 3))

    assert_model_gradient(fused, x, w)
    # The same layers unfused (an Identity between them) give the same numbers.
    plain = [fused[0](x)]
    plain.append(fused[1](plain[0]))
    np.testing.assert_allclose(fused[2](plain[1]), fused(x), rtol=1e-12, atol=1e-14)


def test_a_parameter_free_module_can_be_used_in_several_places():
    """PyTorch code often reuses one activation object; each use needs its own C++ buffers."""
    act = nn.ELU()  # not fused into the Linear before it, so its own layer runs
    fastnn.manual_seed(0)
    a = nn.Sequential(nn.Linear(5, 6), act, nn.Linear(6, 4), act, nn.Linear(4, 3))
    fastnn.manual_seed(0)
    b = nn.Sequential(nn.Linear(5, 6), nn.ELU(), nn.Linear(6, 4), nn.ELU(), nn.Linear(4, 3))
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    g = np.random.default_rng(1).normal(size=(7, 3)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(a.backward(g), b.backward(g))
    np.testing.assert_array_equal(a.flat_grad(), b.flat_grad())
    a.double()
    assert a(x.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize("make", [lambda: nn.Linear(4, 4), lambda: nn.Sequential(nn.ReLU())],
                         ids=["linear", "container"])
def test_sharing_a_module_with_parameters_or_children_is_refused(make):
    shared = make()
    with pytest.raises(ValueError, match=r"Sequential: .* used at '0' is used again in child '2'"):
        nn.Sequential(shared, nn.ReLU(), shared)


def test_parameters_lists_a_shared_parameter_once():
    class Tied(nn.Module):  # a Python module holding the same layer twice, PyTorch-style
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = self.a

    model = Tied()
    assert [name for name, _ in model.named_parameters()] == ["a.weight", "a.bias"]
    assert list(model.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert [name for name, _ in model.named_modules()] == ["", "a"]


def test_a_parameter_free_module_shared_by_nested_blocks():
    """act = nn.ELU() in two blocks of one model, and once more at the top: each place runs its
    own C++ layer, so forward and backward are those of separate modules."""
    act = nn.ELU()
    fastnn.manual_seed(0)
    block1 = nn.Sequential(nn.Linear(5, 6), act)
    block2 = nn.Sequential(nn.Linear(6, 4), act)
    a = nn.Sequential(block1, block2, act, nn.Linear(4, 3))
    fastnn.manual_seed(0)
    b = nn.Sequential(nn.Sequential(nn.Linear(5, 6), nn.ELU()), nn.Sequential(nn.Linear(6, 4), nn.ELU()), nn.ELU(),
                      nn.Linear(4, 3))
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    g = np.random.default_rng(1).normal(size=(7, 3)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(a.backward(g), b.backward(g))
    np.testing.assert_array_equal(a.flat_grad(), b.flat_grad())
    np.testing.assert_array_equal(block2(a[0](x)), b[1](b[0](x)))  # the blocks still run on their own


class _Wrap(nn.Module):
    """A Python module around a built-in one."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)

    def backward(self, g):
        return self.inner.backward(g)


def test_a_module_run_by_a_python_module_and_elsewhere():
    act = nn.ELU()
    model = nn.Sequential(nn.Linear(4, 4), _Wrap(act), act, nn.Linear(4, 2))  # Python use first: the second is a copy
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    h = model[0](x)
    np.testing.assert_allclose(model(x), model[3](act(act(h))), rtol=1e-6)
    with pytest.raises(ValueError, match=r"ELU module used at '1' is used again in child '2'"):
        nn.Sequential(nn.Linear(4, 4), act, _Wrap(act))  # its own layer already runs at '1'
