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
from tests.nn.test_python_layer_contract import Fn

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


# Bad input to the fused step: the errors of the separate layers (a clear exception naming the
# layer and the shapes, never a crash), in training, in eval (whole batch), and in eval with a batch
# large enough for the pool to read the conv's output in blocks of images.
def _fused_step(pool, *before):
    model = nn.Sequential(*before, nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), *([nn.MaxPool2d(2)] if pool else []))
    assert model.execution_plan[-1] == "Conv2d+relu" + ("+MaxPool2d" if pool else "")
    return model


BAD_INPUTS = [
    ("wrong channels", (2, 3, 28, 28), ValueError, r"\[Conv2d\] expected input \(N, 1, H, W\), got \(B, 3, 28, 28\)"),
    ("3-D", (2, 28, 28), ValueError, r"\[Conv2d\] expected input \(N, 1, H, W\), got \(B, 28, 28\)"),
    ("5-D", (2, 1, 1, 28, 28), ValueError, r"\[Conv2d\] expected input \(N, 1, H, W\), got \(B, 1, 1, 28, 28\)"),
    ("batch 0", (0, 1, 28, 28), ValueError, r"x is empty \(shape \(0, 1, 28, 28\)\)"),
]


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval", "eval-blocks"])
@pytest.mark.parametrize("what,shape,error,match", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_naming_the_layer_and_shapes(pool, mode, what, shape, error, match):
    model = _fused_step(pool)
    model.train(mode == "train")
    batch = 512 if mode == "eval-blocks" and shape[0] else shape[0]
    if mode == "eval-blocks":
        assert model[0]._layer._block_images([512, 1, 28, 28]) > 0, "the batch must take the blocked pass"
    x = np.ones((batch,) + shape[1:], np.float32)
    with pytest.raises(error, match=match.replace("B", str(batch))):
        model(x)
    y = model(np.ones((batch or 1, 1, 28, 28), np.float32))  # the step still runs
    assert y.shape == (batch or 1, 8) + ((14, 14) if pool else (28, 28))


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval", "eval-blocks"])
def test_input_too_small_for_the_kernel_or_the_pool_is_refused(pool, mode):
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), *([nn.MaxPool2d(2)] if pool else []))  # no padding
    model.train(mode == "train")
    batch = 512 if mode == "eval-blocks" else 2
    with pytest.raises(ValueError, match=rf"\[Conv2d\] the \(dilated\) kernel \(3, 3\) is larger than the padded "
                                         rf"input \(2, 2\) of input \({batch}, 1, 2, 2\)"):
        model(np.ones((batch, 1, 2, 2), np.float32))
    if pool:  # 3x3 -> 1x1, which a 2x2 window does not fit
        with pytest.raises(ValueError, match=rf"\[MaxPool2d\] input \({batch}, 8, 1, 1\) with kernel_size=\(2, 2\)"
                                             r".* gives output size \(0, 0\)"):
            model(np.ones((batch, 1, 3, 3), np.float32))
    assert model(np.ones((batch, 1, 4, 4), np.float32)).shape == (batch, 8) + ((1, 1) if pool else (2, 2))


NEIGHBOURS = [
    ("wrong channels", lambda x: np.zeros((x.shape[0], 2, 28, 28), x.dtype), ValueError,
     r"\[Conv2d\] expected input \(N, 1, H, W\), got \(B, 2, 28, 28\)"),
    ("empty planes", lambda x: np.zeros((x.shape[0], 1, 1, 0), x.dtype), ValueError,
     r"empty array of shape \(B, 1, 1, 0\)"),
    ("3-D", lambda x: np.zeros((1, 28, 28), x.dtype), ValueError,
     r"child 0 \(Fn\) returned shape \(1, 28, 28\) .*must keep the batch \(B\)"),
    ("batch 0", lambda x: np.zeros((0, 1, 28, 28), x.dtype), ValueError, r"empty array of shape \(0, 1, 28, 28\)"),
    ("float64", lambda x: np.zeros(x.shape, np.float64), TypeError, r"\[Fn.forward\] returned float64, the model is float32"),
    ("not an array", lambda x: x.tolist(), TypeError, r"must return a numpy.ndarray, got list"),
]


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval", "eval-blocks"])
@pytest.mark.parametrize("what,make,error,match", NEIGHBOURS, ids=[n[0] for n in NEIGHBOURS])
def test_a_python_written_neighbour_returning_a_wrong_array_is_refused(pool, mode, what, make, error, match):
    model = _fused_step(pool, Fn(make))  # a Python-written neighbour: its forward returns make(x)
    model.train(mode == "train")
    batch = 512 if mode == "eval-blocks" else 2
    with pytest.raises(error, match=match.replace("B", str(batch))):
        model(np.ones((batch, 1, 28, 28), np.float32))


@pytest.mark.parametrize("pool", [False, True])
def test_a_wrong_gradient_into_the_fused_step_is_refused(pool):
    model = _fused_step(pool)
    with pytest.raises(RuntimeError, match=r"backward called before forward"):
        model.backward(np.ones((2, 8, 14, 14), np.float32))
    y = model(np.ones((2, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match=rf"grad_out must have the shape of the last output \(2, 8, {y.shape[2]}, "):
        model.backward(np.ones((2, 8, 5, 5), np.float32))
    with pytest.raises(TypeError, match=r"grad_out is float64 but the model is float32"):
        model.backward(np.ones(y.shape))
    assert model.backward(np.ones_like(y)).shape == (2, 1, 28, 28)
