"""Conv2d -> ReLU (-> MaxPool2d) with no BatchNorm between, as one layer in a Sequential
(layers/conv_relu.h): the ReLU runs in the conv's output pass, and in eval mode a pool reads the
conv's output a block of images at a time. The numbers are those of the separate layers, bit for bit
(the same arithmetic), in training and eval, forward, backward and the R-operator."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn import reference as R
from tests.conftest import DTYPES, assert_model_gradient, assert_sum_close, num_threads, random_array

# (input shape, out_channels, kernel, padding, conv bias): the small-batch (NHWC product),
# image-by-image (batch >= 4), pointwise (1x1) and Winograd (>= 16 in, >= 8 out channels) paths.
CASES = [
    ((1, 3, 7, 6), 5, 3, 1, True),
    ((3, 4, 6, 6), 6, 3, 0, False),
    ((5, 4, 8, 6), 6, 3, 1, True),
    ((6, 8, 6, 6), 4, 1, 0, True),
    ((4, 16, 6, 6), 8, 3, 1, True),
]


def _conv(case, dtype):
    shape, O, k, p, bias = case
    return nn.Conv2d(shape[1], O, k, padding=p, bias=bias, dtype=dtype, generator=1)


def _pair(case, dtype, pool):
    """The layers fused, and the same values as separate layers (an Identity after the conv)."""
    tail = [nn.MaxPool2d(2)] if pool else []
    fused = nn.Sequential(_conv(case, dtype), nn.ReLU(), *tail)
    plain = nn.Sequential(_conv(case, dtype), nn.Identity(), nn.ReLU(), *tail)
    assert fused.execution_plan == ["Conv2d+relu" + ("+MaxPool2d" if pool else "")]
    assert plain.execution_plan[:3] == ["Conv2d", "Identity", "ReLU"]
    return fused, plain


def _run(model, x, g):
    y = model(x)
    model.zero_grad()
    dx = model.backward(g)
    return [y.copy(), dx.copy(), model.flat_grad().copy()]


@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) + f"-k{c[2]}" for c in CASES])
@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_separate_layers_bit_for_bit(rng, case, pool, training, dtype):
    fused, plain = _pair(case, dtype, pool)
    for m in (fused, plain):
        m.train(training)
    x = random_array(rng, case[0], dtype)
    out = fused(x)
    g = random_array(rng, out.shape, dtype)
    got, want = _run(fused, x, g), _run(plain, x, g)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    # and the reference: relu(conv(x) + b), pooled
    conv = fused[0]
    h = R.conv2d_forward(x, conv.weight.data, None if conv.bias is None else conv.bias.data, padding=conv.padding)
    ref = np.maximum(h, 0)
    if pool:
        ref = R.max_pool2d_forward(ref, 2)[0]
    terms = R.conv2d_forward(np.abs(x), np.abs(conv.weight.data),
                             None if conv.bias is None else np.abs(conv.bias.data), padding=conv.padding)
    if pool:
        terms = R.max_pool2d_forward(terms, 2)[0]
    assert_sum_close(got[0], ref, terms, conv.weight.data[0].size + 1, dtype=dtype)
    assert (got[0] >= 0).all()


@pytest.mark.parametrize("pool", [False, True])
def test_gradient_matches_finite_differences(rng, pool):
    fused, _ = _pair(CASES[2], np.float64, pool)
    x = rng.standard_normal(CASES[2][0])
    w = rng.standard_normal(fused(x).shape)
    assert_model_gradient(fused, x, w)


# Eval mode in blocks of images: a conv with few taps and a batch of at least two blocks, the last
# block taking a remainder; the separate layers run the conv over the whole batch, then the pool.
BLOCK_CASES = [((90, 1, 28, 28), 8, 3, 1, True), ((131, 3, 9, 10), 5, 3, 1, False)]


@pytest.mark.parametrize("case", BLOCK_CASES, ids=[str(c[0]) for c in BLOCK_CASES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_in_blocks_is_the_whole_batch_pass(rng, case, dtype):
    fused, plain = _pair(case, dtype, True)
    fused.eval(), plain.eval()
    b = fused[0]._layer._block_images(list(case[0]))
    assert 4 <= b and case[0][0] >= 2 * b and case[0][0] % b, "the case must take blocks with a remainder"
    x = random_array(rng, case[0], dtype)
    g = random_array(rng, plain(x).shape, dtype)
    want = _run(plain, x, g)
    for threads in (1, 2):
        with num_threads(threads):
            got = _run(fused, x, g)  # backward after a blocked forward reruns the conv
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("training", [True, False])
def test_hvp_is_the_separate_layers_one(rng, training):
    """The R-operator is the conv's, then the ReLU layer's (after a blocked eval forward too)."""
    case = BLOCK_CASES[0]
    models = []
    for m in _pair(case, np.float64, True):
        m.extend([nn.Flatten(), nn.Linear(8 * 14 * 14, 3, dtype=np.float64, generator=2)])
        models.append(m)
    x, y = rng.standard_normal(case[0]), rng.integers(0, 3, case[0][0])
    v = rng.standard_normal(models[0].count_params())
    loss = nn.CrossEntropyLoss()
    hv = [fastnn.hvp(m, loss, x, y, v, training=training) for m in models]
    np.testing.assert_array_equal(hv[0], hv[1])


# fit with the fused step lowest in the model: tests/nn/test_conv_batchnorm.py's
# test_fit_with_the_pooled_layer_lowest_trains_its_conv[no-bn].


def test_a_folded_cnn_runs_its_blocks_fused(rng):
    """fold_batchnorm leaves Conv2d -> ReLU -> MaxPool2d: they run as one step, with the folded
    model's outputs those of the eval model within the rounding of the fold."""
    fastnn.manual_seed(0)
    model = fastnn.models.simple_cnn()
    x = random_array(rng, (40, 1, 28, 28), np.float32)
    fastnn.fit(model, x, rng.integers(0, 10, 40), epochs=1, batch_size=20, verbose=0)
    model.eval()
    folded = nn.fold_batchnorm(model)
    assert folded.execution_plan[:2] == ["Conv2d+relu+MaxPool2d", "Conv2d+relu+MaxPool2d"]
    np.testing.assert_allclose(folded(x), model(x), rtol=1e-4, atol=1e-4 * np.abs(model(x)).max())


def test_other_activations_and_pools_are_not_fused():
    for tail, plan in (([nn.Tanh()], ["Conv2d", "Tanh"]),
                       ([nn.ReLU(), nn.AvgPool2d(2)], ["Conv2d+relu", "AvgPool2d"])):
        assert nn.Sequential(nn.Conv2d(2, 3, 3), *tail).execution_plan == plan
