"""nn.Conv2d (a handle on the C++ Conv2d layer) against reference/conv.py and PyTorch: forward and
backward over a grid of configurations, finite differences of a small CNN, the layer contract
(accumulate / overwrite / frozen / no input gradient), threads, bad input, save/load."""

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn import reference as R
from tests.conftest import DTYPES, assert_model_gradient, assert_sum_close, num_threads, random_array, requires_torch
from tests.reference.test_conv import backward_terms, forward_terms

# (input shape, out_channels, kernel, stride, padding, dilation, groups): every kernel 1/3/5,
# stride 1/2/3, padding 0/1/2, dilation 1/2, groups 1/2/C, channels 1/3/17, batch 1, odd sizes,
# and batches of >= 4 images (conv.h's image-by-image path) beside smaller ones.
CASES = [
    ((1, 1, 7, 9), 3, 3, 1, 1, 1, 1),  # one channel, batch 1
    ((2, 3, 11, 10), 5, 5, 2, 2, 1, 1),
    ((1, 17, 6, 7), 17, 3, 1, 1, 1, 17),  # depthwise
    ((3, 4, 9, 8), 6, 3, 3, 0, 2, 2),  # stride 3, dilation 2, grouped
    ((2, 17, 5, 5), 4, 1, 1, 0, 1, 1),  # 1x1: no im2col
    ((5, 3, 13, 11), 8, (3, 5), (2, 1), (1, 2), (2, 1), 1),  # non-square everything, 5 images
    ((4, 6, 7, 7), 4, 1, 2, 1, 1, 2),  # strided, padded 1x1
    ((6, 2, 31, 33), 7, 5, 3, 2, 2, 1),
    ((8, 8, 10, 9), 8, 3, 1, 1, 1, 8),  # depthwise, image by image
]
CASE_IDS = [f"{c[0]}-o{c[1]}-k{c[2]}-s{c[3]}-p{c[4]}-d{c[5]}-g{c[6]}".replace(" ", "") for c in CASES]


def _conv(case, dtype, bias=True, seed=0):
    shape, O, k, s, p, d, g = case
    m = nn.Conv2d(shape[1], O, k, stride=s, padding=p, dilation=d, groups=g, bias=bias, dtype=dtype, generator=seed)
    return m, dict(stride=s, padding=p, dilation=d, groups=g)


def _check_grads(m, x, g, geometry, dx, base=None, times=1):
    """dx and the parameters' gradients (base + times * the reference's) within their sums' bounds."""
    want = R.conv2d_backward(g, x, m.weight.data, **geometry)
    (tx, tw, tb), (kx, kw, kb) = backward_terms(g, x, m.weight.data, **geometry)
    if dx is not None:
        assert_sum_close(dx, want[0], tx, kx, err_msg="dx")
    base = base or {}
    w0 = base.get("weight", 0)
    assert_sum_close(m.weight.grad, w0 + times * want[1], np.abs(w0) + times * tw, times * kw + 1, err_msg="dW")
    if m.bias is not None:
        b0 = base.get("bias", 0)
        assert_sum_close(m.bias.grad, b0 + times * want[2], np.abs(b0) + times * tb, times * kb + 1, err_msg="db")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(rng, case, dtype):
    bias = case[2] != 5  # and some without a bias
    m, geometry = _conv(case, dtype, bias)
    assert m.weight.shape == (case[1], case[0][1] // case[6]) + m.kernel_size
    x = random_array(rng, case[0], dtype)
    y = m(x)
    b = m.bias.data if bias else None
    assert y.dtype == dtype and y.shape == m._layer.output_shape(x.shape)
    want = R.conv2d_forward(x, m.weight.data, b, **geometry)
    assert_sum_close(y, want, *forward_terms(x, m.weight.data, b, **geometry))
    g = random_array(rng, y.shape, dtype)
    m.zero_grad()
    _check_grads(m, x, g, geometry, m.backward(g))


def _small_cnn(dtype, rng):
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False, dtype=dtype), nn.BatchNorm2d(3, dtype=dtype), nn.ReLU(),
        nn.Conv2d(3, 4, 3, stride=2, padding=(1, 0), dilation=(1, 2), dtype=dtype), nn.Flatten(),
        nn.Linear(4 * 3 * 1, 3, dtype=dtype),
    )
    for p in model.parameters():
        p.data[...] = rng.uniform(-1, 1, p.shape)
    return model


def test_small_cnn_gradient_matches_finite_differences(rng):
    model = _small_cnn(np.float64, rng)
    assert model.execution_plan == ["Conv2d+BatchNorm2d+relu", "Conv2d", "Flatten", "Linear"]
    x = rng.standard_normal((3, 2, 5, 5))
    w = rng.standard_normal((3, 3))  # loss = sum(w * model(x)), a random upstream gradient

    assert_model_gradient(model, x, w)


# --- the layer contract ------------------------------------------------------------------------


@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[5]], ids=["3x3", "1x1", "batch5"])
def test_gradients_accumulate_and_frozen_layers_leave_them(rng, case):
    m, geometry = _conv(case, np.float32)
    x = random_array(rng, case[0], np.float32)
    g = random_array(rng, m(x).shape, np.float32)
    base = {name: random_array(rng, p.shape, np.float32) for name, p in m.named_parameters()}
    m.weight.grad[...], m.bias.grad[...] = base["weight"], base["bias"]
    for times in (1, 2):
        _check_grads(m, x, g, geometry, m.backward(g), base, times)
    assert m._layer.backward(g, False) is None  # no input gradient asked: the parameters' still added
    _check_grads(m, x, g, geometry, None, base, 3)
    m.requires_grad_(False)
    before = m.flat_grad().copy()
    _check_grads(m, x, g, geometry, m.backward(g), base, 3)  # dx as before, the gradients left alone
    assert np.array_equal(m.flat_grad(), before)


def _softmax_ce_grad(out, y):
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return (p / len(y)).astype(out.dtype)


@pytest.mark.parametrize("frozen", [False, True])
def test_the_epoch_loop_overwrites_the_gradients(rng, frozen):
    """fit's epoch loop has every layer write (=) its gradients instead of zeroing the buffer per
    batch: after two batches the flat gradient is the second batch's alone."""
    f64 = dict(dtype=np.float64)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, **f64), nn.ReLU(), nn.Conv2d(4, 3, 3, stride=2, **f64),
                          nn.Flatten(), nn.Linear(3 * 3 * 3, 5, **f64))
    if frozen:
        model[2].requires_grad_(False)
    X, y = rng.standard_normal((6, 2, 8, 8)), rng.integers(0, 5, 6)
    model.zero_grad()
    model.backward(_softmax_ce_grad(model(X[3:]), y[3:]))
    want = model.flat_grad().copy()
    model.flat_grad()[...] = rng.standard_normal(want.shape)
    fastnn.fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=0.0), epochs=1, batch_size=3, shuffle=False,
               verbose=0)
    np.testing.assert_allclose(model.flat_grad(), want, rtol=1e-12, atol=1e-15)
    if frozen:
        assert not model[2].weight.grad.any() and not model[2].bias.grad.any()


def test_train_step_learns(rng):
    fastnn.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3))
    X = random_array(rng, (16, 1, 6, 6), np.float32)
    y = rng.integers(0, 3, 16)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    losses = [fastnn.train_step(model, X, y, "cross_entropy", opt, step=i) for i in range(20)]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("case", [CASES[1], CASES[5], CASES[7]], ids=["batch2", "batch5", "batch6"])
def test_same_result_with_one_and_two_threads(rng, case):
    results = []
    x = random_array(rng, case[0], np.float32)
    for n in (1, 2):
        m, _ = _conv(case, np.float32, seed=5)
        with num_threads(n):
            y = m(x)
            g = np.cos(y)
            results.append([y, m.backward(g), m.flat_grad().copy()])
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# --- arguments and bad input ---------------------------------------------------------------------


def test_attributes_repr_and_default_init():
    m = nn.Conv2d(6, 8, 3, stride=(2, 1), padding=[1, 2], dilation=2, groups=2, generator=0)
    assert (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups) == \
        (6, 8, (3, 3), (2, 1), (1, 2), (2, 2), 2)
    assert repr(m) == "Conv2d(6, 8, kernel_size=(3, 3), stride=(2, 1), padding=(1, 2), dilation=(2, 2), groups=2)"
    assert repr(nn.Conv2d(1, 2, (1, 3), bias=False)) == "Conv2d(1, 2, kernel_size=(1, 3), stride=(1, 1), bias=False)"
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    # PyTorch's default: U(+-1/sqrt(fan_in)) for weight and bias, fan_in = C/G * kh * kw = 27
    m = nn.Conv2d(6, 64, 3, groups=2, generator=1, dtype=np.float64)
    bound = 1 / np.sqrt(27)
    for p in (m.weight.data, m.bias.data):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound
    assert abs(m.weight.data.std() - bound / np.sqrt(3)) < 0.05 * bound
    m = nn.Conv2d(3, 4, 3, init="he_normal", generator=2)
    assert not m.bias.data.any() and m.weight.data.any()


def test_padding_same_and_valid(rng):
    x = random_array(rng, (2, 3, 9, 8), np.float64)
    same = nn.Conv2d(3, 4, (3, 5), padding="same", dilation=(2, 1), dtype=np.float64)
    assert same.padding == "same" and same(x).shape == (2, 4, 9, 8)
    valid = nn.Conv2d(3, 4, 3, padding="valid")
    assert valid.padding == "valid" and valid._layer.output_shape((2, 3, 9, 8)) == (2, 4, 7, 6)
    assert "padding='same'" in repr(same)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="needs uneven padding"):
        nn.Conv2d(3, 4, 4, padding="same")


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(in_channels=4, out_channels=6, kernel_size=3, groups=3), ValueError,
     "in_channels 4 is not divisible by groups=3"),
    (dict(in_channels=4, out_channels=6, kernel_size=3, groups=4), ValueError,
     "out_channels 6 is not divisible by groups=4"),
    (dict(in_channels=0, out_channels=6, kernel_size=3), ValueError, "in_channels must be a positive integer"),
    (dict(in_channels=3, out_channels=6, kernel_size=0), ValueError, "kernel_size must be >= 1"),
    (dict(in_channels=3, out_channels=6, kernel_size=(3, 3, 3)), TypeError, "kernel_size must be an int or a pair"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, stride=0), ValueError, "stride must be >= 1"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, padding=-1), ValueError, "padding must be >= 0"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, padding="full"), ValueError, "padding must be an int, a pair"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, dilation=1.5), TypeError, "dilation must be an int or a pair"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, padding_mode="reflect"), ValueError,
     "padding_mode 'reflect' is not supported"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, bias=1), TypeError, "bias must be True or False"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        nn.Conv2d(**kwargs)


@pytest.mark.parametrize("shape,match", [
    ((8, 4, 28, 28), r"\[Conv2d\] expected input \(N, 3, H, W\), got \(8, 4, 28, 28\)"),
    ((8, 3, 28), r"\[Conv2d\] expected input \(N, 3, H, W\), got \(8, 3, 28\)"),
    ((8, 3 * 28 * 28), r"\[Conv2d\] expected input \(N, 3, H, W\), got \(8, 2352\)"),
    ((2, 3, 4, 9), r"\[Conv2d\] the \(dilated\) kernel \(9, 5\) is larger than the padded input \(6, 11\) "
                   r"of input \(2, 3, 4, 9\) with padding \(1, 1\)"),
])
def test_bad_input_is_a_value_error_naming_the_shapes(shape, match):
    m = nn.Conv2d(3, 2, (5, 3), padding=1, dilation=(2, 2))
    with pytest.raises(ValueError, match=match):
        m(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=match):  # the same inside a container
        nn.Sequential(nn.ReLU(), m)(np.zeros(shape, np.float32))


def test_to_float64_keeps_the_geometry_and_weights(rng):
    m = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    x = random_array(rng, (5, 4, 9, 8), np.float32)
    y32 = m(x)
    w = m.weight.data.astype(np.float64)
    m.double()
    assert m.weight.dtype == np.float64 and np.array_equal(m.weight.data, w)
    np.testing.assert_allclose(m(x.astype(np.float64)), y32, rtol=1e-4, atol=1e-5)


def test_save_load_round_trip(rng, tmp_path):
    model = nn.Sequential(
        nn.Conv2d(3, 6, (3, 5), stride=(1, 2), padding=(1, 2), groups=3, bias=False),
        nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3, padding="same", dilation=2),
        nn.Conv2d(4, 2, 1, padding="valid"),
    )
    x = random_array(rng, (4, 3, 9, 10), np.float32)
    model(x)
    model.eval()
    fastnn.save(tmp_path / "cnn.fnn", model)
    loaded = fastnn.load(tmp_path / "cnn.fnn")
    assert repr(loaded) == repr(model)
    for k, v in model.state_dict().items():
        assert np.array_equal(loaded.state_dict()[k], v), k
    assert np.array_equal(loaded.eval()(x), model(x))


# --- against PyTorch -------------------------------------------------------------------------------


@requires_torch
@pytest.mark.parametrize("case", CASES[:6], ids=CASE_IDS[:6])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch(rng, case, dtype):
    import torch

    shape, O, k, s, p, d, g = case
    m, geometry = _conv(case, dtype)
    t = torch.nn.Conv2d(shape[1], O, k, stride=s, padding=p, dilation=d, groups=g)
    t = t.to(torch.float64 if dtype == np.float64 else torch.float32)
    assert repr(m) == repr(t)
    t.load_state_dict({n: torch.from_numpy(v.copy()) for n, v in m.state_dict().items()})
    x = random_array(rng, shape, dtype)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = t(tx)
    y = m(x)
    b = m.bias.data
    assert_sum_close(y, ty.detach().numpy(), *forward_terms(x, m.weight.data, b, **geometry))
    go = random_array(rng, y.shape, dtype)
    ty.backward(torch.from_numpy(go))
    m.zero_grad()
    dx = m.backward(go)
    (tx_t, tw_t, tb_t), (kx, kw, kb) = backward_terms(go, x, m.weight.data, **geometry)
    assert_sum_close(dx, tx.grad.numpy(), tx_t, kx)
    assert_sum_close(m.weight.grad, t.weight.grad.numpy(), tw_t, kw)
    assert_sum_close(m.bias.grad, t.bias.grad.numpy(), tb_t, kb)


@requires_torch
def test_state_dict_loads_into_torch_and_back(rng):
    import torch

    model = _small_cnn(np.float64, rng)
    x = rng.standard_normal((4, 2, 5, 5))
    model(x)  # the running statistics move
    tmodel = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1, bias=False), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=(1, 0), dilation=(1, 2)), torch.nn.Flatten(), torch.nn.Linear(12, 3),
    ).double()
    tmodel.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in model.state_dict().items()})  # strict
    tmodel.eval()
    model.eval()
    np.testing.assert_allclose(model(x), tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
    back = _small_cnn(np.float64, np.random.default_rng(7))
    back.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    back.eval()
    np.testing.assert_array_equal(back(x), model(x))
