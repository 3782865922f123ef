"""Conv2d -> BatchNorm2d (-> ReLU (-> Dropout)) as one layer in a Sequential (layers/conv_batchnorm.h):
in eval mode BN's folded affine and the ReLU run in the conv's output pass; the numbers are those
of the separate layers (forward within rounding of the affine, gradients exactly), in every mode; with a
MaxPool2d(2) after the ReLU in training the gradients to rounding (BN's sums run over the pool's windows)."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn import reference as R
from tests.conftest import DTYPES, assert_model_gradient, assert_sum_close, num_threads, random_array

# (input shape, out_channels, kernel, padding, conv bias): the small-batch (NHWC product),
# image-by-image (batch >= 4) and pointwise (1x1) paths of kernels/conv.h.
CASES = [
    ((1, 3, 7, 6), 5, 3, 1, True),
    ((3, 4, 6, 6), 6, 3, 0, False),
    ((5, 4, 7, 5), 6, 3, 1, False),
    ((6, 8, 5, 5), 4, 1, 0, True),
    ((2, 8, 5, 5), 4, 1, 0, False),
]


def _layers(case, dtype, seed, relu=True, dropout=None, track=True, affine=True):
    rng = np.random.default_rng(seed)
    shape, O, k, p, bias = case
    conv = nn.Conv2d(shape[1], O, k, padding=p, bias=bias, dtype=dtype, generator=1)
    bn = nn.BatchNorm2d(O, affine=affine, track_running_stats=track, dtype=dtype)
    if track:
        bn.running_mean[...] = rng.standard_normal(O)
        bn.running_var[...] = rng.uniform(0.2, 3, O)
    if affine:
        bn.weight.data[...] = rng.standard_normal(O)
        bn.bias.data[...] = rng.standard_normal(O)
    rest = ([nn.ReLU()] if relu else []) + ([nn.Dropout(dropout)] if dropout is not None else [])
    return [conv, bn] + rest


def _pair(*args, **kwargs):
    """The layers fused, and the same layers (other objects, the same values) unfused: an Identity
    between conv and BN. The Identity comes first in the fused model so that a Dropout has the same
    index, hence random stream, in both."""
    fused = nn.Sequential(nn.Identity(), *_layers(*args, **kwargs))
    plain = _layers(*args, **kwargs)
    return fused, nn.Sequential(plain[0], nn.Identity(), *plain[1:])


def _eval_terms(conv, bn, x):
    """|scale| |conv(x)| + |shift| from the terms of the conv's sum, and k: BN's affine rounds twice."""
    b = None if conv.bias is None else np.abs(conv.bias.data.astype(np.float64))
    t = R.conv2d_forward(np.abs(x.astype(np.float64)), np.abs(conv.weight.data.astype(np.float64)), b,
                         padding=conv.padding)
    scale = 1 / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    if bn.affine:
        scale = scale * np.abs(bn.weight.data)
    shift = np.abs(bn.running_mean) * scale + (np.abs(bn.bias.data) if bn.affine else 0)
    return scale[:, None, None] * t + shift[:, None, None], conv.weight.data[0].size + 3


def _backward(model, g):
    model.zero_grad()
    dx = model.backward(g)
    return dx, model.flat_grad().copy()


@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) + f"-k{c[2]}-b{int(c[4])}" for c in CASES])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_is_the_separate_layers(rng, case, relu, dtype):
    fused, plain = _pair(case, dtype, 1, relu)
    assert fused.execution_plan[1] == ("Conv2d+BatchNorm2d+relu" if relu else "Conv2d+BatchNorm2d")
    fused.eval(), plain.eval()
    x = random_array(rng, case[0], dtype)
    y = fused(x)
    want = plain(x)
    assert_sum_close(y, want, *_eval_terms(fused[1], fused[2], x))
    if relu:
        assert (y >= 0).all() and (y == 0).any()
    # backward after an eval forward (input gradients of an eval model): exactly the layers' own
    g = random_array(rng, y.shape, dtype)
    for a, b in zip(_backward(fused, g), _backward(plain, g)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dropout", [None, 0.3])
def test_training_is_the_separate_layers(rng, dropout):
    fused, plain = _pair(CASES[2], np.float32, 2, True, dropout)
    assert fused.execution_plan[1] == "Conv2d+BatchNorm2d+relu" + ("+dropout" if dropout else "")
    x = random_array(rng, CASES[2][0], np.float32)
    g = random_array(rng, fused._layer.output_shape(x.shape), np.float32)
    results = []
    for model, bn in ((fused, fused[2]), (plain, plain[2])):
        before = bn.running_mean.copy()
        fastnn.manual_seed(4)
        results.append([model(x), *_backward(model, g), bn.running_mean.copy(), bn.running_var.copy()])
        assert not np.array_equal(bn.running_mean, before)  # the batch statistics moved the running ones
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("setup", ["bn_eval_in_training_model", "bn_training_in_eval_model", "no_running_stats",
                                   "no_affine", "predict"])
def test_modes_and_options(rng, setup):
    """The fused layer follows the BatchNorm's own mode, decided at each forward."""
    fused, plain = _pair(CASES[1], np.float64, 3, track=setup != "no_running_stats", affine=setup != "no_affine")
    bn = fused[2]
    if setup == "bn_eval_in_training_model":
        bn.eval(), plain[2].eval()
    elif setup == "bn_training_in_eval_model":
        fused.eval(), plain.eval()
        bn.train(), plain[2].train()
    elif setup != "predict":
        fused.eval(), plain.eval()
    x = rng.standard_normal(CASES[1][0])
    if setup == "predict":  # evaluate/predict run the whole model in eval mode
        np.testing.assert_allclose(fastnn.predict(fused, x), fastnn.predict(plain, x), rtol=1e-12, atol=1e-12)
        return
    mean = bn.running_mean.copy() if bn.track_running_stats else None
    y = fused(x)
    want = plain(x)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    for a, b in zip(_backward(fused, g), _backward(plain, g)):
        np.testing.assert_array_equal(a, b)
    if setup == "bn_training_in_eval_model":
        assert not np.array_equal(bn.running_mean, mean)


def test_eval_gradient_matches_finite_differences(rng):
    model = nn.Sequential(*_layers(CASES[2], np.float64, 4), nn.Conv2d(6, 2, 3, stride=2, dtype=np.float64),
                          nn.Flatten())
    assert model.execution_plan[0] == "Conv2d+BatchNorm2d+relu"
    model.eval()
    x = rng.standard_normal(CASES[2][0])
    w = rng.standard_normal(model(x).shape)

    assert_model_gradient(model, x, w)


def test_not_fused():
    assert nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm1d(3)).execution_plan == ["Conv2d", "BatchNorm1d"]
    assert nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.BatchNorm2d(3)).execution_plan == \
        ["Conv2d+relu", "BatchNorm2d"]  # the conv's ReLU fuses (layers/conv_relu.h), the BatchNorm after it not
    assert nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh()).execution_plan == \
        ["Conv2d+BatchNorm2d", "Tanh"]
    match = r"\[BatchNorm2d\] expected input \(N, C, H, W\) with C = 4, got \(2, 3, 3, 3\)"
    with pytest.raises(ValueError, match=match):
        nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(4)).eval()(np.zeros((2, 2, 5, 5), np.float32))


def test_eval_same_bits_on_one_and_two_threads(rng):
    fused, _ = _pair(CASES[2], np.float32, 5)
    fused.eval()
    x = random_array(rng, CASES[2][0], np.float32)
    g = random_array(rng, fused._layer.output_shape(x.shape), np.float32)
    results = []
    for n in (1, 2):
        with num_threads(n):
            results.append([fused(x), *_backward(fused, g)])
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# --- Conv2d -> BatchNorm2d -> ReLU -> MaxPool2d as one layer (FusedConvBatchNormPool) -----------------
# conv outputs of even width (BN's output pass pools: the BENCH.md CNN's blocks) and of odd width
# (the separate pool after FusedConvBatchNorm), batch 1
POOL_CASES = [CASES[0], CASES[1], CASES[2], CASES[3], ((4, 1, 28, 28), 8, 3, 1, False), ((1, 2, 9, 10), 3, 3, 1, True)]
POOL_IDS = [str(c[0]) + f"-k{c[2]}" for c in POOL_CASES]


def _assert_pooled_close(got, want, n, err_msg=""):
    """A gradient (or what training made of it) after the pooled training backward, against the separate
    layers': BN's sums over a channel's n values run over the pool's windows in another order, and their
    rounding reaches every gradient below them, each a sum whose terms are on the scale of the array's
    largest value: within c eps sqrt(n) of it (conftest's sum_bound; one element may cancel, the scale
    does not)."""
    want = np.asarray(want)
    assert_sum_close(got, want, np.max(np.abs(want)), n, err_msg=err_msg)


def _pool_pair(case, dtype, seed, pool=2):
    fused = nn.Sequential(nn.Identity(), *_layers(case, dtype, seed), nn.MaxPool2d(pool))
    plain = _layers(case, dtype, seed)
    return fused, nn.Sequential(plain[0], nn.Identity(), *plain[1:], nn.MaxPool2d(pool))


@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_training_with_max_pool_is_the_separate_layers(rng, case, dtype):
    fused, plain = _pool_pair(case, dtype, 6)
    assert fused.execution_plan[1] == "Conv2d+BatchNorm2d+relu+MaxPool2d"
    assert plain.execution_plan[2:] == ["BatchNorm2d+relu", "MaxPool2d"]
    x = random_array(rng, case[0], dtype)
    g = random_array(rng, fused._layer.output_shape(x.shape), dtype)
    results = []
    for model, bn, threads in ((plain, plain[2], 1), (fused, fused[2], 1), (fused, fused[2], 2), (fused, fused[2], 3)):
        bn.running_mean[...], bn.running_var[...] = 0.5, 2.0
        with num_threads(threads):
            results.append([model(x), *_backward(model, g), bn.running_mean.copy(), bn.running_var.copy()])
    pooled = case[0][3] % 2 == 0  # an even conv output width: the pooled backward (to rounding)
    n = case[0][0] * case[0][2] * case[0][3]
    for i, (want, one, *more) in enumerate(zip(*results)):
        for a in more:  # the fused layer's, bit for bit on any thread count
            np.testing.assert_array_equal(a, one)
        if pooled and i in (1, 2):  # dx and the parameter gradients
            _assert_pooled_close(one, want, n, err_msg=str(i))
        else:  # the output and the running statistics
            np.testing.assert_array_equal(one, want)


@pytest.mark.parametrize("case", POOL_CASES[:2] + POOL_CASES[4:], ids=POOL_IDS[:2] + POOL_IDS[4:])
def test_eval_with_max_pool_is_the_separate_layers(rng, case):
    fused, plain = _pool_pair(case, np.float64, 7)
    fused.eval(), plain.eval()
    x = rng.standard_normal(case[0])
    t, k = _eval_terms(fused[1], fused[2], x)
    assert_sum_close(fused(x), plain(x), R.max_pool2d_forward(t, 2)[0], k)
    g = rng.standard_normal(fused(x).shape)
    for a, b in zip(_backward(fused, g), _backward(plain, g)):
        np.testing.assert_array_equal(a, b)


def test_other_pools_are_not_fused_into_the_output_pass(rng):
    """A 3x3 stride-2 pool runs after FusedConvBatchNorm: the same numbers as the separate layers."""
    fused, plain = _pool_pair(POOL_CASES[4], np.float32, 8, pool=3)
    assert fused.execution_plan[1] == "Conv2d+BatchNorm2d+relu+MaxPool2d"
    x = random_array(rng, POOL_CASES[4][0], np.float32)
    g = random_array(rng, fused._layer.output_shape(x.shape), np.float32)
    for a, b in zip([fused(x), *_backward(fused, g)], [plain(x), *_backward(plain, g)]):
        np.testing.assert_array_equal(a, b)


def test_training_with_max_pool_gradient_matches_finite_differences(rng):
    model = nn.Sequential(*_layers(((3, 2, 6, 6), 3, 3, 1, True), np.float64, 9), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(27, 2, dtype=np.float64))
    assert model.execution_plan[0] == "Conv2d+BatchNorm2d+relu+MaxPool2d"
    x = rng.standard_normal((3, 2, 6, 6))
    w = rng.standard_normal((3, 2))

    assert_model_gradient(model, x, w)


@pytest.mark.parametrize("with_bn", [True, False], ids=["bn", "no-bn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_with_the_pooled_layer_lowest_trains_its_conv(rng, dtype, with_bn):
    """fit's backward stops below the lowest layer that trains: a Conv2d+BN+ReLU+MaxPool2d (or, with
    no BatchNorm, layers/conv_relu.h's Conv2d+relu+MaxPool2d) first in the model must say it trains
    (its conv and BN), or fit never updates them (a merge once lost it)."""
    def build(separate):
        fastnn.manual_seed(2)
        head = [nn.Conv2d(1, 4, 3, padding=1)] + ([nn.BatchNorm2d(4)] if with_bn else []) + [nn.ReLU()]
        if separate:  # an Identity splits the step: before the pool with BN, before the ReLU without
            head.insert(len(head) if with_bn else 1, nn.Identity())
        return nn.Sequential(*head, nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 5)).to(dtype)
    x, y = random_array(rng, (40, 1, 6, 6), dtype), rng.integers(0, 5, 40)
    fused, plain = build(False), build(True)
    assert fused.execution_plan[0] == ("Conv2d+BatchNorm2d+relu+MaxPool2d" if with_bn else "Conv2d+relu+MaxPool2d")
    start = fused.state_dict()["0.weight"].copy()
    for model in (fused, plain):
        fastnn.fit(model, x, y, optimizer="sgd", epochs=2, batch_size=16, seed=3, verbose=0)
    assert not np.array_equal(fused.state_dict()["0.weight"], start)
    if not with_bn:
        np.testing.assert_array_equal(fused.flat_parameters(), plain.flat_parameters())
        return
    # BN's pooled backward rounds its sums in another order (_assert_pooled_close), over 16 x 6 x 6 values
    got, want = fused.state_dict(), plain.state_dict()  # the same entries, in order (the Identity has none)
    assert len(got) == len(want)
    for (key, a), b in zip(got.items(), want.values()):
        _assert_pooled_close(a, b, 16 * 36, err_msg=key)


# Eval mode in blocks of images (Conv2d::forward_affine_blocks): a batch of at least two blocks of a
# conv with few taps; batch sizes set so that the last block takes a remainder. The same layers with
# an Identity before the pool run the folded conv over the whole batch, then the pool: the same bits.
BLOCK_CASES = [((90, 1, 28, 28), 8, 3, 1, False), ((131, 3, 9, 10), 5, 3, 1, True), ((150, 4, 6, 6), 6, 1, 0, True)]


def _eval_block_pair(case, dtype, seed):
    blocked = nn.Sequential(*_layers(case, dtype, seed), nn.MaxPool2d(2))
    whole = nn.Sequential(*_layers(case, dtype, seed), nn.Identity(), nn.MaxPool2d(2))
    blocked.eval(), whole.eval()
    assert blocked.execution_plan[0] == "Conv2d+BatchNorm2d+relu+MaxPool2d"
    assert whole.execution_plan[:2] == ["Conv2d+BatchNorm2d+relu", "Identity"]
    b = blocked[0]._layer._block_images(list(case[0]))
    assert 4 <= b and case[0][0] >= 2 * b and case[0][0] % b, "the case must take blocks with a remainder"
    return blocked, whole


@pytest.mark.parametrize("case", BLOCK_CASES, ids=[str(c[0]) for c in BLOCK_CASES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_in_blocks_is_the_whole_batch_pass(rng, case, dtype):
    blocked, whole = _eval_block_pair(case, dtype, 11)
    x = random_array(rng, case[0], dtype)
    want = whole(x)
    conv, bn = blocked[0], blocked[1]
    h = R.conv2d_forward(x.astype(np.float64), conv.weight.data.astype(np.float64),
                         None if conv.bias is None else conv.bias.data.astype(np.float64), padding=conv.padding)
    z = (h - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + bn.eps)
    ref = R.max_pool2d_forward(np.maximum(z * bn.weight.data[:, None, None] + bn.bias.data[:, None, None], 0), 2)[0]
    t, k = _eval_terms(conv, bn, x)
    assert_sum_close(want, ref, R.max_pool2d_forward(t, 2)[0], k, dtype=dtype)
    g = random_array(rng, want.shape, dtype)
    expected = [want, *_backward(whole, g)]
    for threads in (1, 2):
        with num_threads(threads):
            got = [blocked(x), *_backward(blocked, g)]
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_eval_in_blocks_hvp_is_the_whole_batch_one(rng):
    """The R-operator after a blocked eval forward reruns the conv and BN+ReLU, as backward does."""
    case = BLOCK_CASES[0]
    models = [m.extend([nn.Flatten(), nn.Linear(8 * 14 * 14, 3, dtype=np.float64)]) or m
              for m in _eval_block_pair(case, np.float64, 12)]
    models[1][-1].load_state_dict(models[0][-1].state_dict())
    x, y = rng.standard_normal(case[0]), rng.integers(0, 3, case[0][0])
    v = rng.standard_normal(models[0].count_params())
    loss = nn.CrossEntropyLoss()
    hv = [fastnn.hvp(m, loss, x, y, v, training=False) for m in models]
    np.testing.assert_array_equal(hv[0], hv[1])


def test_small_batches_and_many_taps_take_no_blocks():
    conv = nn.Conv2d(1, 8, 3, padding=1)._layer
    b = conv._block_images([1000, 1, 28, 28])
    assert b >= 4 and conv._block_images([2 * b - 1, 1, 28, 28]) == 0
    assert nn.Conv2d(32, 64, 3, padding=1)._layer._block_images([1000, 32, 14, 14]) == 0  # 288 taps


# The pooled training backward with the BN input gradient made an image at a time where the conv's
# backward reads it (conv2d_backward's grad_image: batches of >= 4, no Winograd, no conv bias),
# lowest in the model (no dx, as fit runs the first layer) or not, against the separate layers (to
# rounding, _assert_pooled_close; bit for bit on 1, 2 and 3 threads): the cnn's first block (planes wider than a BN tile), several channels a BN group, 3 input
# channels, a frozen conv (BN's gradients alone), BN without affine parameters, and a conv bias
# (the whole-gradient path); the cnn's second block's 14x14, rows of more windows than a vector of
# the pool's row-pair pass (kernels/pool.h max_pool_even_2x2_plane: 16 floats, 8 doubles), and odd
# heights (a last row in no window).
LOWEST_CASES = [((16, 1, 28, 28), 8, 3, 1, False), ((9, 3, 10, 12), 5, 3, 1, False), ((5, 16, 6, 8), 4, 3, 1, False),
                ((6, 2, 8, 8), 4, 3, 1, True), ((4, 3, 14, 14), 4, 3, 1, False), ((4, 2, 9, 40), 3, 3, 1, False),
                ((5, 2, 7, 36), 3, 3, 1, True)]


@pytest.mark.parametrize("case", LOWEST_CASES, ids=[str(c[0]) + f"-b{int(c[4])}" for c in LOWEST_CASES])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", ["lowest", "with_dx", "frozen_conv", "no_affine"])
def test_pooled_backward_by_images_is_the_separate_layers(rng, case, dtype, variant):
    affine = variant != "no_affine"
    fused = nn.Sequential(*_layers(case, dtype, 6, affine=affine), nn.MaxPool2d(2))
    plain_layers = _layers(case, dtype, 6, affine=affine)
    plain = nn.Sequential(plain_layers[0], nn.Identity(), *plain_layers[1:], nn.MaxPool2d(2))
    assert fused.execution_plan[0] == "Conv2d+BatchNorm2d+relu+MaxPool2d"
    if variant == "frozen_conv":
        fused[0].weight.requires_grad = plain[0].weight.requires_grad = False
    x = random_array(rng, case[0], dtype)
    g = random_array(rng, fused._layer.output_shape(x.shape), dtype)
    need_dx = variant == "with_dx"
    results = []
    for model, threads in ((plain, 1), (fused, 1), (fused, 2), (fused, 3)):
        model.train()
        with num_threads(threads):
            model(x)
            model.zero_grad()
            dx = model._layer.backward(g, need_dx)
            results.append([model.flat_grad().copy()] + ([np.array(dx)] if need_dx else []))
    assert np.any(results[0][0] != 0)
    for want, one, *more in zip(*results):
        for a in more:  # the fused layer's, bit for bit on any thread count
            np.testing.assert_array_equal(a, one)
        _assert_pooled_close(one, want, case[0][0] * case[0][2] * case[0][3])


# The pooled backward's edge cases (the window codes and x at the argmax that the forward keeps):
# batch 1, odd heights (a last row in no window), 1, 3 and 17 channels, gamma negative and zero,
# ties in the windows (a 1x1 conv of inputs on a coarse grid: equal taps, the first wins), and a
# channel the ReLU closes everywhere (beta far below), against the separate layers.
EDGE_CASES = [((1, 2, 7, 6), 3), ((3, 1, 9, 10), 17), ((4, 2, 6, 8), 1), ((5, 3, 5, 4), 3)]


@pytest.mark.parametrize("case", EDGE_CASES, ids=[str(c) for c in EDGE_CASES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pooled_backward_edge_cases_are_the_separate_layers(rng, case, dtype):
    shape, C = case
    x = (rng.integers(-2, 3, shape) * 0.5).astype(dtype)  # ties in most windows
    gamma = rng.standard_normal(C)
    gamma[::3] = -np.abs(gamma[::3])
    gamma[1::4] = 0
    beta = rng.standard_normal(C)
    beta[-1] = -1e3  # the last channel's ReLU passes nothing (with gamma != 0 or not)
    models = []
    for separate in (False, True):
        layers = [nn.Conv2d(shape[1], C, 1, bias=False, dtype=dtype, generator=3), nn.BatchNorm2d(C, dtype=dtype),
                  nn.ReLU(), nn.MaxPool2d(2)]
        layers[0].weight.data[...] = np.round(layers[0].weight.data * 4) / 4
        layers[1].weight.data[...], layers[1].bias.data[...] = gamma, beta
        models.append(nn.Sequential(*(layers[:3] + [nn.Identity()] + layers[3:] if separate else layers)))
    fused, plain = models
    assert fused.execution_plan[0] == "Conv2d+BatchNorm2d+relu+MaxPool2d"
    g = random_array(rng, fused._layer.output_shape(x.shape), dtype)
    results = []
    for model, threads in ((plain, 1), (fused, 1), (fused, 2), (fused, 3)):
        with num_threads(threads):
            y = model(x)
            model.zero_grad()
            dx = model._layer.backward(g, True)
            results.append([y, np.array(dx), model.flat_grad().copy()])
    n = shape[0] * shape[2] * shape[3]
    for i, (want, one, *more) in enumerate(zip(*results)):
        for a in more:
            np.testing.assert_array_equal(a, one)
        if i == 0:
            np.testing.assert_array_equal(one, want)  # the forward: bit for bit
        else:
            _assert_pooled_close(one, want, n, err_msg=str(i))
    assert np.all(results[0][0][:, -1] == 0)  # the closed channel
