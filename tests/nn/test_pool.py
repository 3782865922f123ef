"""nn.MaxPool2d / AvgPool2d / AdaptiveAvgPool2d / GlobalAvgPool2d: against torch.nn (outputs, input
gradients, attributes, repr), inside a Sequential with a Linear (gradients, state_dicts both ways,
fit), save/load, float64 finite differences, reused buffers, bad input naming the layer."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn import reference as R
from tests.conftest import DTYPES, assert_gradient, assert_sum_close, random_array, requires_torch

# (fastnn/torch class name, args, kwargs, input shape)
MODULES = [
    ("MaxPool2d", (2,), {}, (3, 4, 28, 28)),  # the CNN's pool (fast path)
    ("MaxPool2d", (2,), {}, (1, 3, 9, 7)),  # odd sizes: the last row and column get no gradient
    ("MaxPool2d", (3, 2, 1), {"dilation": 2, "ceil_mode": True}, (2, 3, 11, 9)),
    ("MaxPool2d", ((3, 2),), {"stride": (1, 2), "padding": (1, 0)}, (2, 1, 6, 7)),
    ("AvgPool2d", (2,), {}, (2, 5, 8, 9)),
    ("AvgPool2d", (2,), {}, (2, 4, 7, 8)),  # even width: the flat pair pass; odd height: a row without window
    ("AvgPool2d", (3, 2, 1), {"ceil_mode": True, "count_include_pad": False}, (2, 3, 10, 7)),
    ("AvgPool2d", (3,), {"stride": 1, "padding": 1, "divisor_override": 4}, (1, 2, 5, 6)),
    ("AdaptiveAvgPool2d", (1,), {}, (3, 17, 7, 7)),
    ("AdaptiveAvgPool2d", ((None, 4),), {}, (2, 3, 6, 9)),
    ("AdaptiveAvgPool2d", (3,), {}, (2, 2, 7, 5)),
]
IDS = [f"{m[0]}{m[1]}{m[2]}-{m[3]}".replace(" ", "") for m in MODULES]


def _pair(module):
    import torch

    cls, args, kwargs, shape = module
    return getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs), shape


@requires_torch
@pytest.mark.parametrize("module", MODULES, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch(rng, module, dtype):
    import torch

    ours, theirs, shape = _pair(module)
    x = random_array(rng, shape, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    y = ours(x)
    assert y.dtype == dtype
    g = random_array(rng, y.shape, dtype)
    ty.backward(torch.tensor(g))
    dx = ours.backward(g)
    if isinstance(ours, nn.MaxPool2d):  # a selection, and the same additions in the same order: exact
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(dx, tx.grad.numpy())
    else:
        assert_sum_close(y, ty.detach().numpy(), _reference(ours, np.abs(x.astype(np.float64))), shape[2] * shape[3])
        assert_sum_close(dx, tx.grad.numpy(), _reference_back(ours, np.abs(g.astype(np.float64)), shape),
                         y[0, 0].size)
    assert repr(ours) == repr(theirs)
    for name in ours._config_keys:
        if name != "divisor_override" or hasattr(theirs, name):
            assert getattr(ours, name) == getattr(theirs, name), name


def _reference(module, x):
    if isinstance(module, nn.MaxPool2d):
        return R.max_pool2d_forward(x, module.kernel_size, module.stride, module.padding, module.dilation,
                                    module.ceil_mode)[0]
    if isinstance(module, nn.AvgPool2d):
        return R.avg_pool2d_forward(x, module.kernel_size, module.stride, module.padding, module.ceil_mode,
                                    module.count_include_pad, module.divisor_override)
    return R.adaptive_avg_pool2d_forward(x, module.output_size)


def _reference_back(module, g, shape):
    if isinstance(module, nn.AvgPool2d):
        return R.avg_pool2d_backward(g, shape, module.kernel_size, module.stride, module.padding, module.ceil_mode,
                                     module.count_include_pad, module.divisor_override)
    return R.adaptive_avg_pool2d_backward(g, shape)


@pytest.mark.parametrize("module", MODULES[1:], ids=IDS[1:])
def test_gradient_matches_finite_differences(rng, module):
    cls, args, kwargs, shape = module
    layer = getattr(nn, cls)(*args, **kwargs, dtype=np.float64)
    shape = (1, 2) + shape[2:]
    x = rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) / 7  # distinct: no max ties
    g = random_array(rng, layer(x).shape, np.float64)
    dx = layer.backward(g)
    assert_gradient(lambda: float(np.sum(layer(x) * g)), x, dx)


def test_global_avg_pool(rng):
    layer = nn.GlobalAvgPool2d(dtype=np.float64)
    x = random_array(rng, (2, 3, 5, 4), np.float64)
    y = layer(x)
    assert y.shape == (2, 3) and repr(layer) == "GlobalAvgPool2d()"
    assert_sum_close(y, x.mean(axis=(2, 3)), np.abs(x).mean(axis=(2, 3)), 21)
    g = random_array(rng, y.shape, np.float64)
    dx = layer.backward(g)
    assert_gradient(lambda: float(np.sum(layer(x) * g)), x, dx)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1, dtype=np.float64), nn.Flatten())
    np.testing.assert_array_equal(model(x), y)
    np.testing.assert_array_equal(model.backward(g), dx)


@pytest.mark.parametrize("module", [MODULES[0], MODULES[5], MODULES[8]], ids=[IDS[0], IDS[5], IDS[8]])
def test_reused_buffers_are_fully_rewritten(rng, module):
    """The second batch's results owe nothing to the first's (the 2x2 backward writes every element once)."""
    cls, args, kwargs, shape = module
    layer = getattr(nn, cls)(*args, **kwargs)
    for _ in range(2):
        x = random_array(rng, shape, np.float32)
        y = layer(x)
        g = random_array(rng, y.shape, np.float32)
        dx = layer.backward(g)
        fresh = getattr(nn, cls)(*args, **kwargs)
        np.testing.assert_array_equal(y, fresh(x))
        np.testing.assert_array_equal(dx, fresh.backward(g))
    if cls == "MaxPool2d":
        _, indices = R.max_pool2d_forward(x, *args)
        np.testing.assert_array_equal(dx, R.max_pool2d_backward(g, indices, shape))


def test_layers_follow_their_input_dtype(rng):
    layer = nn.MaxPool2d(2)
    x = random_array(rng, (1, 2, 4, 4), np.float64)
    assert layer(x).dtype == np.float64 and layer.backward(np.ones((1, 2, 2, 2))).dtype == np.float64


def _cnn_head(dtype, rng):
    model = nn.Sequential(nn.MaxPool2d(2, dtype=dtype), nn.AvgPool2d(3, 1, 1, count_include_pad=False, dtype=dtype),
                          nn.Flatten(dtype=dtype), nn.Linear(3 * 4 * 3, 5, dtype=dtype))
    for p in model.parameters():
        p.data[...] = rng.uniform(-0.5, 0.5, p.shape)
    return model


@requires_torch
def test_sequential_matches_torch_and_state_dicts_load_both_ways(rng):
    import torch

    model = _cnn_head(np.float64, rng)
    tmodel = torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                                 torch.nn.Flatten(), torch.nn.Linear(36, 5)).double()
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    x = random_array(rng, (4, 3, 8, 7), np.float64)
    tx = torch.tensor(x, requires_grad=True)
    ty = tmodel(tx)
    y = model(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = random_array(rng, y.shape, np.float64)
    ty.backward(torch.tensor(g))
    model.zero_grad()
    dx = model.backward(g)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model[3].weight.grad, tmodel[3].weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    back = _cnn_head(np.float64, rng)
    back.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    np.testing.assert_array_equal(back(x), y)


def test_sequential_gradient_matches_finite_differences(rng):
    model = _cnn_head(np.float64, rng)
    x = rng.permutation(np.arange(2 * 3 * 8 * 7, dtype=np.float64)).reshape(2, 3, 8, 7) / 50
    g = random_array(rng, model(x).shape, np.float64)
    model.zero_grad()
    dx = model.backward(g)
    assert_gradient(lambda: float(np.sum(model(x) * g)), x, dx)
    w = model[3].weight
    assert_gradient(lambda: float(np.sum(model(x) * g)), w.data, w.grad.copy())


def test_fit_and_save_load(rng, tmp_path):
    model = nn.Sequential(nn.MaxPool2d(2), nn.AvgPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d((None, 2)),
                          nn.Flatten(), nn.Linear(3 * 4 * 2, 3))
    x = random_array(rng, (64, 3, 14, 14), np.float32)
    y = (x[:, 0, :7].mean(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 1].mean(axis=(1, 2)) > 0)
    fastnn.fit(model, x, y, epochs=2, batch_size=16, verbose=0)
    out = model(x)
    path = tmp_path / "pool.fnn"
    fastnn.save(path, model)
    loaded = fastnn.load(path)
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded(x), out)
    assert loaded[1].ceil_mode is True and loaded[2].output_size == (None, 2)
    gap = nn.Sequential(nn.MaxPool2d((2, np.int64(1)), stride=[2, 1], padding=(1, 0), ceil_mode=np.bool_(False)),
                        nn.AvgPool2d(np.int32(1), divisor_override=np.int64(1)), nn.GlobalAvgPool2d())
    fastnn.save(path, gap)
    loaded = fastnn.load(path)
    assert loaded[0].kernel_size == (2, 1) and loaded[0].stride == (2, 1) and loaded[0].padding == (1, 0)
    assert type(gap[0].kernel_size[1]) is int and gap[0].ceil_mode is False and type(gap[1].divisor_override) is int
    np.testing.assert_array_equal(loaded(x), gap(x))


@pytest.mark.parametrize(
    "make, shape, exc, match",
    [
        (lambda: nn.MaxPool2d(2), (8, 784), ValueError, r"\[MaxPool2d\] expected input \(N, C, H, W\), got \(8, 784\)"),
        (lambda: nn.AvgPool2d(2), (8, 3, 4), ValueError, r"\[AvgPool2d\] expected input \(N, C, H, W\), got \(8, 3, 4\)"),
        (lambda: nn.AdaptiveAvgPool2d(2), (8, 3), ValueError, r"\[AdaptiveAvgPool2d\] expected input \(N, C, H, W\)"),
        (lambda: nn.GlobalAvgPool2d(), (8, 3), ValueError, r"\[GlobalAvgPool2d\] expected input \(N, C, H, W\)"),
        (lambda: nn.MaxPool2d(3), (2, 3, 2, 2), ValueError,
         r"\[MaxPool2d\] input \(2, 3, 2, 2\) with kernel_size=\(3, 3\), padding=\(0, 0\), dilation=\(1, 1\) gives "
         r"output size \(0, 0\)"),
        (lambda: nn.AvgPool2d(5, padding=2), (1, 1, 1, 8), None, None),  # fits: padding makes room
        (lambda: nn.MaxPool2d(3, dilation=3), (1, 1, 6, 6), ValueError, r"\[MaxPool2d\] input .* gives output size \(0, 0\)"),
    ],
)
def test_bad_input_names_the_layer(rng, make, shape, exc, match):
    layer = make()
    x = random_array(rng, shape, np.float32)
    if exc is None:
        assert layer(x).shape == (1, 1, 1, 2)
        return
    with pytest.raises(exc, match=match):
        layer(x)
    with pytest.raises(exc, match=match):
        nn.Sequential(make(), nn.Flatten())(x)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: nn.MaxPool2d(3, padding=2), ValueError,
         r"\[MaxPool2d\] padding should be at most half of kernel_size, got padding=\(2, 2\), kernel_size=\(3, 3\)"),
        (lambda: nn.AvgPool2d((2, 4), padding=(1, 3)), ValueError, r"\[AvgPool2d\] padding should be at most half"),
        (lambda: nn.MaxPool2d(0), ValueError, r"\[MaxPool2d\] kernel_size must be >= 1, got 0"),
        (lambda: nn.MaxPool2d(2, stride=0), ValueError, r"\[MaxPool2d\] stride must be >= 1, got 0"),
        (lambda: nn.MaxPool2d(2.5), TypeError, r"\[MaxPool2d\] kernel_size must be an int or a pair of ints, got 2.5"),
        (lambda: nn.MaxPool2d(2, ceil_mode="yes"), TypeError, r"\[MaxPool2d\] ceil_mode must be a bool, got str"),
        (lambda: nn.AvgPool2d(2, divisor_override=0), ValueError,
         r"\[AvgPool2d\] divisor_override must be a nonzero int or None, got 0"),
        (lambda: nn.AdaptiveAvgPool2d(0), ValueError, r"\[AdaptiveAvgPool2d\] output_size must be >= 1 \(or None\), got 0"),
        (lambda: nn.AdaptiveAvgPool2d((2, 3, 4)), ValueError, r"\[AdaptiveAvgPool2d\] output_size must be an int, None or a pair"),
        (lambda: nn.AdaptiveAvgPool2d("7"), TypeError, r"\[AdaptiveAvgPool2d\] output_size must be an int, None or a pair"),
    ],
)
def test_bad_arguments_name_the_layer(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@requires_torch
def test_after_a_fused_batchnorm_relu_as_in_the_cnn(rng):
    """BatchNorm2d + ReLU (one fused layer in training) then MaxPool2d(2): outputs and gradients as torch's."""
    import torch

    model = nn.Sequential(nn.BatchNorm2d(3, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(3 * 7 * 7, 4, dtype=np.float64))
    tmodel = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(147, 4)).double()
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}, strict=False)
    x = random_array(rng, (5, 3, 14, 14), np.float64)
    tx = torch.tensor(x, requires_grad=True)
    ty = tmodel(tx)
    y = model(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = random_array(rng, y.shape, np.float64)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(model.backward(g), tx.grad.numpy(), rtol=1e-9, atol=1e-12)
