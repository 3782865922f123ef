"""nn.DenseBlock and nn.Transition: against torchvision-style torch modules (outputs, input and
parameter gradients, train and eval, state_dicts both ways), float64 finite differences, bad
input, memory that grows linearly in the layers, deterministic dropout, save/load."""

import ctypes
import ctypes.util
from collections import OrderedDict

import numpy as np
import pytest

import fastnn
from fastnn import nn
from tests.conftest import assert_gradient, numerical_gradient


def _set_random_state(model, rng):
    """Random affine BN parameters and running statistics (not 1/0), so the test sees them."""
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.num_features)
            m.bias.data[...] = rng.normal(0, 0.5, m.num_features)
            m.running_mean[...] = rng.normal(0, 0.3, m.num_features)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features)


# --- torchvision's _DenseLayer / _DenseBlock / _Transition, written with torch.nn (torchvision is not installed)


def torch_dense_block(torch, num_layers, in_channels, growth_rate, bn_size):
    tnn = torch.nn

    class DenseLayer(tnn.Module):
        def __init__(self, c):
            super().__init__()
            k = growth_rate
            if bn_size is None:
                parts = [("norm1", tnn.BatchNorm2d(c)), ("relu1", tnn.ReLU()),
                         ("conv1", tnn.Conv2d(c, k, 3, padding=1, bias=False))]
            else:
                parts = [("norm1", tnn.BatchNorm2d(c)), ("relu1", tnn.ReLU()),
                         ("conv1", tnn.Conv2d(c, bn_size * k, 1, bias=False)),
                         ("norm2", tnn.BatchNorm2d(bn_size * k)), ("relu2", tnn.ReLU()),
                         ("conv2", tnn.Conv2d(bn_size * k, k, 3, padding=1, bias=False))]
            for name, m in parts:
                self.add_module(name, m)

        def forward(self, features):
            h = torch.cat(features, 1)
            for m in self.children():
                h = m(h)
            return h

    class DenseBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            for i in range(num_layers):
                self.add_module(f"denselayer{i + 1}", DenseLayer(in_channels + i * growth_rate))

        def forward(self, x):
            features = [x]
            for layer in self.children():
                features.append(layer(features))
            return torch.cat(features, 1)

    return DenseBlock().double()


def torch_transition(torch, c_in, c_out):
    tnn = torch.nn
    return tnn.Sequential(OrderedDict([("norm", tnn.BatchNorm2d(c_in)), ("relu", tnn.ReLU()),
                                       ("conv", tnn.Conv2d(c_in, c_out, 1, bias=False)),
                                       ("pool", tnn.AvgPool2d(2, stride=2))])).double()


def _to_torch(torch, model, tmodel):
    """fastnn's state_dict into the torch module; only num_batches_tracked is left out."""
    missing, unexpected = tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()},
                                                 strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)


def _compare_with_torch(torch, model, tmodel, x, g, training):
    model.train(training)
    tmodel.train(training)
    y = model(x)
    dx = model.backward(g)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    yt = tmodel(xt)
    yt.backward(torch.tensor(g.astype(np.float64)))
    # float64 end to end vs torch's float64; float32: a few hundred ulps of the values' scale
    # through ~10 normalizations and convolutions (errors are O(1) on any real defect)
    eps = np.finfo(x.dtype).eps
    scale = 300 if x.dtype == np.float32 else 1000

    def check(a, b, what):
        b = b.detach().numpy()
        assert a.shape == b.shape, what
        bound = scale * eps * max(1.0, float(np.abs(b).max()))
        err = float(np.abs(a.astype(np.float64) - b).max())
        assert err <= bound, f"{what}: max |diff| {err:.3g} > {bound:.3g}"

    check(y, yt, "output")
    check(dx, xt.grad, "input gradient")
    tparams = dict(tmodel.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    assert names == list(tparams), "parameter names and order as torch's (= run order)"
    for name, p in model.named_parameters():
        check(p.grad, tparams[name].grad, f"grad of {name}")
    if training:  # running statistics updated as torch's
        tstate = tmodel.state_dict()
        for name, v in model.state_dict().items():
            if "running" in name:
                check(v, tstate[name], name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bn_size", [4, None])
@pytest.mark.parametrize("training", [True, False])
def test_dense_block_matches_torch(dtype, bn_size, training):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    L, C0, k = 3, 5, 4
    model = nn.DenseBlock(L, C0, k, bn_size=bn_size, dtype=dtype)
    _set_random_state(model, rng)
    tmodel = torch_dense_block(torch, L, C0, k, bn_size)
    _to_torch(torch, model, tmodel)
    x = rng.normal(size=(3, C0, 6, 5)).astype(dtype)
    g = rng.normal(size=(3, C0 + L * k, 6, 5)).astype(dtype)
    _compare_with_torch(torch, model, tmodel, x, g, training)


def test_dense_block_batch_of_one_eval_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    model = nn.DenseBlock(2, 3, 5, bn_size=2, dtype=np.float64)
    _set_random_state(model, rng)
    tmodel = torch_dense_block(torch, 2, 3, 5, 2)
    _to_torch(torch, model, tmodel)
    x, g = rng.normal(size=(1, 3, 7, 3)), rng.normal(size=(1, 13, 7, 3))
    _compare_with_torch(torch, model, tmodel, x, g, training=False)


def test_state_dict_loads_both_ways():
    torch = pytest.importorskip("torch")
    tmodel = torch_dense_block(torch, 2, 4, 3, 2)
    for p in tmodel.parameters():
        torch.nn.init.normal_(p)
    model = nn.DenseBlock(2, 4, 3, bn_size=2, dtype=np.float64)
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})  # torch -> fastnn
    for k, v in tmodel.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(model.state_dict()[k], v.numpy())
    back = torch_dense_block(torch, 2, 4, 3, 2)
    _to_torch(torch, model, back)  # fastnn -> torch
    for k, v in back.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(v.numpy(), tmodel.state_dict()[k].numpy())


def test_children_and_names():
    model = nn.DenseBlock(2, 6, 4, bn_size=4)
    assert model.out_channels == 14
    assert list(dict(model.named_children())) == ["denselayer1", "denselayer2"]
    layer = model.denselayer2
    assert list(dict(layer.named_children())) == ["norm1", "relu1", "conv1", "norm2", "relu2", "conv2"]
    assert layer.norm1.num_features == 10 and layer.conv1.out_channels == 16 and layer.conv2.kernel_size == (3, 3)
    assert layer.conv1.bias is None and layer.conv2.padding == (1, 1)
    plain = nn.DenseBlock(1, 6, 4, bn_size=None)
    assert list(dict(plain.denselayer1.named_children())) == ["norm1", "relu1", "conv1"]
    assert plain.denselayer1.conv1.kernel_size == (3, 3)


def test_finite_differences_float64():
    rng = np.random.default_rng(5)
    model = nn.DenseBlock(3, 2, 4, bn_size=2, dtype=np.float64)
    _set_random_state(model, rng)
    x = rng.normal(size=(3, 2, 5, 5))
    G = rng.normal(size=(3, 14, 5, 5))

    def loss():
        return float(np.sum(model(x) * G))

    model.zero_grad()
    model(x)
    dx = model.backward(G)
    assert_gradient(loss, x, dx, eps=1e-5, rtol=1e-5, atol=1e-7)
    for name in ("denselayer1.norm1.weight", "denselayer2.conv1.weight", "denselayer3.norm2.bias",
                 "denselayer3.conv2.weight"):
        p = dict(model.named_parameters())[name]
        analytic = p.grad.copy()
        numeric = numerical_gradient(loss, p.data, eps=1e-5)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7, err_msg=name)


def test_shared_scratch_is_bit_identical_to_kept_outputs():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 3, 6, 6)).astype(np.float32)
    g = rng.normal(size=(4, 3 + 4 * 5, 6, 6)).astype(np.float32)
    results = []
    for shared in (True, False):
        fastnn.manual_seed(0)
        model = nn.DenseBlock(4, 3, 5, bn_size=2, drop_rate=0.2)
        model.shared_scratch = shared
        y = model(x)
        dx = model.backward(g)
        results.append((y, dx, model.flat_grad().copy()))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(2, 4, 5, 5), (2, 3, 5), (2, 3, 5, 5, 1)])
def test_wrong_input_raises_value_error(shape):
    model = nn.DenseBlock(2, 3, 4)
    with pytest.raises(ValueError, match=r"\[DenseBlock\].*\(N, 3, H, W\)"):
        model(np.zeros(shape, np.float32))


def test_bad_arguments():
    with pytest.raises(ValueError, match="DenseBlock"):
        nn.DenseBlock(0, 3, 4)
    with pytest.raises(ValueError, match="DenseBlock"):
        nn.DenseBlock(2, 3, 4, drop_rate=1.0)
    with pytest.raises(TypeError, match="DenseBlock"):
        nn.DenseBlock(2, 3, "4")


def _allocated_bytes():
    """Bytes the C/C++ heap holds (glibc mallinfo2: arena in use + mmapped blocks)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc's mallinfo2")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def _activation_bytes(num_layers, shared):
    """Heap bytes a forward+backward adds to a built DenseBlock (its parameters are allocated
    before): the block's feature, gradient and scratch buffers and its layers' own."""
    model = nn.DenseBlock(num_layers, 4, 8, bn_size=1)
    model.shared_scratch = shared
    x = np.ones((4, 4, 16, 16), np.float32)
    g = np.ones((4, model.out_channels, 16, 16), np.float32)
    before = _allocated_bytes()
    model(x)
    model.backward(g)
    used = _allocated_bytes() - before
    return used, model._layer.buffer_elements


def _heap_is_visible():
    """Whether mallinfo2 sees the C heap: not under a sanitizer, whose allocator replaces glibc's."""
    before = _allocated_bytes()
    probe = ctypes.create_string_buffer(1 << 22)
    seen = _allocated_bytes() - before >= 1 << 22
    del probe
    return seen


def test_activation_memory_grows_linearly_in_layers():
    if not _heap_is_visible():
        pytest.skip("mallinfo2 does not see this process's heap (a sanitizer's allocator)")
    # The growing concatenation is quadratic in the layers: keeping per layer what layer i reads
    # (c_i = C0 + i k channels) costs sum_i c_i. The block keeps the feature and gradient buffers
    # (C0 + L k channels each), one shared scratch for the BN-ReLU outputs and one for the 1x1
    # convs' input gradients, and per layer only its bottleneck's and new channels' buffers.
    # a warm-up at the largest size first: scratch that only grows (per thread, kept between calls)
    # is then at its largest, so the figures below do not depend on what earlier tests ran
    _activation_bytes(16, True), _activation_bytes(16, False)
    per = {L: _activation_bytes(L, True) for L in (4, 8, 16)}
    used = {L: u for L, (u, _) in per.items()}
    # linear: doubling the layers adds twice what the previous doubling added (quadratic: up to 4x;
    # measured 2.4x, and 3.0x when the BN-ReLU outputs are kept per layer)
    assert used[16] - used[8] < 2.7 * (used[8] - used[4]), used
    # the block's own buffers: features and their gradient (C0 + L k channels each); the widest
    # layer's BN1-ReLU output and 1x1 conv input gradient (C0 + (L-1) k); BN2-ReLU output, conv2's
    # and BN2's input gradients (bn_size k = 8 each); new features' gradient (k); input gradient (C0)
    N, C0, k, S = 4, 4, 8, 256
    for L, (_, elements) in per.items():
        assert elements == N * S * (2 * (C0 + L * k) + 2 * (C0 + (L - 1) * k) + 3 * 8 + k + C0)
    # per-layer BN-ReLU outputs are quadratic: the same measure sees it
    kept = {L: _activation_bytes(L, False)[0] for L in (4, 8, 16)}
    assert kept[16] - kept[8] > 2.7 * (kept[8] - kept[4]), kept


def test_dropout_is_deterministic_for_a_seed():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 3, 6, 6)).astype(np.float32)
    g = rng.normal(size=(4, 3 + 2 * 8, 6, 6)).astype(np.float32)

    def run(seed, drop_rate=0.5, training=True):
        fastnn.manual_seed(seed)
        model = nn.DenseBlock(2, 3, 8, bn_size=2, drop_rate=drop_rate)
        model.load_state_dict(reference.state_dict())
        model.train(training)
        y = model(x)
        return y, model.backward(g)

    fastnn.manual_seed(0)
    reference = nn.DenseBlock(2, 3, 8, bn_size=2)
    y1, dx1 = run(11)
    y2, dx2 = run(11)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)
    y3, _ = run(12)
    assert not np.array_equal(y1, y3)
    y0, _ = run(11, drop_rate=0.0)
    new = y0[:, 3:]  # dropout touches the new features only, zeroes about half, scales the rest by 2
    np.testing.assert_array_equal(y1[:, :3], y0[:, :3])
    dropped = (y1[:, 3:11] == 0) & (new[:, :8] != 0)
    assert 0.35 < dropped.mean() < 0.65
    kept = y1[:, 3:11] != 0
    np.testing.assert_allclose(y1[:, 3:11][kept], 2 * new[:, :8][kept], rtol=1e-6)
    ye, _ = run(11, training=False)  # eval: no dropout
    np.testing.assert_array_equal(ye, run(11, drop_rate=0.0, training=False)[0])


def test_in_sequential_and_save_load(tmp_path):
    rng = np.random.default_rng(8)
    model = nn.Sequential(nn.DenseBlock(2, 3, 4, bn_size=2), nn.Transition(11, 5))
    _set_random_state(model, rng)
    model.eval()
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 5, 3, 3)
    fastnn.save(tmp_path / "m.fnn", model)
    loaded = fastnn.load(tmp_path / "m.fnn")
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), y)
    assert list(loaded.state_dict()) == list(model.state_dict())


@pytest.mark.parametrize("training", [True, False])
def test_transition_matches_torch(training):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    model = nn.Transition(6, 3, dtype=np.float64)
    _set_random_state(model, rng)
    model.conv.weight.data[...] = rng.normal(size=(3, 6, 1, 1))
    assert list(dict(model.named_children())) == ["norm", "relu", "conv", "pool"]
    tmodel = torch_transition(torch, 6, 3)
    _to_torch(torch, model, tmodel)
    x = rng.normal(size=(2, 6, 7, 6))  # odd height: the pool drops the last row, as torch's
    g = rng.normal(size=(2, 3, 3, 3))
    _compare_with_torch(torch, model, tmodel, x, g, training)


def _small_net():
    fastnn.manual_seed(0)
    return nn.Sequential(nn.DenseBlock(2, 3, 4, bn_size=2), nn.Transition(11, 4), nn.Flatten(), nn.Linear(36, 5))


def test_train_step_through_the_cpp_loop_matches_forward_backward():
    """The epoch loop's gradient (written, not accumulated: overwrite_grads) is the module's."""
    rng = np.random.default_rng(10)
    X = rng.normal(size=(8, 3, 6, 6)).astype(np.float32)
    y = rng.integers(0, 5, 8)
    stepped, manual = _small_net(), _small_net()
    before = stepped.flat_parameters().copy()
    fastnn.train_step(stepped, X, y, nn.CrossEntropyLoss(), fastnn.optim.SGD(stepped.parameters(), lr=1.0))
    logits = manual(X).astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(8), y] -= 1
    manual.zero_grad()
    manual.backward((p / 8).astype(np.float32))
    np.testing.assert_allclose(before - stepped.flat_parameters(), manual.flat_grad(), rtol=1e-4, atol=1e-6)


def test_frozen_layer_gets_no_gradient_and_the_rest_is_unchanged():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 3, 5, 5)).astype(np.float64)
    g = rng.normal(size=(3, 11, 5, 5))
    grads = []
    for freeze in (False, True):
        fastnn.manual_seed(0)
        model = nn.DenseBlock(2, 3, 4, bn_size=2, dtype=np.float64)
        if freeze:
            model.denselayer1.requires_grad_(False)
        model.zero_grad()
        model(x)
        dx = model.backward(g)
        grads.append((dx, {n: p.grad.copy() for n, p in model.named_parameters()}))
    np.testing.assert_array_equal(grads[0][0], grads[1][0])
    for name, value in grads[1][1].items():
        if name.startswith("denselayer1."):
            assert not value.any(), name
        else:
            np.testing.assert_array_equal(value, grads[0][1][name])


@pytest.mark.parametrize("training", [True, False])
def test_one_pixel_images_match_torch(training):
    """1x1 feature maps (S = 1: a channel's values one per sample) after many transitions."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    model = nn.DenseBlock(3, 4, 3, bn_size=2, dtype=np.float64)
    _set_random_state(model, rng)
    tmodel = torch_dense_block(torch, 3, 4, 3, 2)
    _to_torch(torch, model, tmodel)
    x, g = rng.normal(size=(5, 4, 1, 1)), rng.normal(size=(5, 13, 1, 1))
    _compare_with_torch(torch, model, tmodel, x, g, training)


def test_recompute_bn_statistics_through_a_dense_block():
    """Each BatchNorm's running statistics become the exact mean and unbiased variance of its input
    over the data (the block's first BNs read their slice of the feature buffer in place)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    model = nn.DenseBlock(3, 2, 3, bn_size=2, dtype=np.float64)
    _set_random_state(model, rng)
    X = rng.normal(size=(10, 2, 4, 5))
    nn.recompute_bn_statistics(model, X, batch_size=4)
    tmodel = torch_dense_block(torch, 3, 2, 3, 2)
    _to_torch(torch, model, tmodel)
    tmodel.eval()
    seen = {}
    for name, m in tmodel.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, inp[0].detach().numpy()))
    with torch.no_grad():
        tmodel(torch.tensor(X))
    state = model.state_dict()
    assert len(seen) == 6
    for name, x in seen.items():
        np.testing.assert_allclose(state[name + ".running_mean"], x.mean(axis=(0, 2, 3)), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state[name + ".running_var"], x.var(axis=(0, 2, 3), ddof=1), rtol=1e-9,
                                   atol=1e-12)


def test_results_do_not_depend_on_the_thread_count():
    from tests.conftest import num_threads

    rng = np.random.default_rng(14)
    x = rng.normal(size=(16, 5, 9, 9)).astype(np.float32)
    g = rng.normal(size=(16, 5 + 3 * 6, 9, 9)).astype(np.float32)
    out = []
    for n in (1, 2):
        with num_threads(n):
            fastnn.manual_seed(0)
            model = nn.DenseBlock(3, 5, 6, bn_size=4, drop_rate=0.1)
            model.zero_grad()
            y = model(x)
            out.append((y, model.backward(g), model.flat_grad().copy()))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
