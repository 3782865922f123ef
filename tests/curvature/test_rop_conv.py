"""Conv2d's R-operator (layers/conv.h) against central differences of its forward and backward
(float64) and float32 against float64, over groups (depthwise), stride, dilation, padding, 1x1,
batch 1 and batches of >= 4 images (conv.h's image-by-image path); frozen layers and bad input."""

import numpy as np
import pytest

from fastnn import nn
from tests.curvature.rop_image import F64, check_rop_float32, rop_pass
from tests.curvature.test_layer_rop import check_rop

# (input shape, out_channels, kernel, stride, padding, dilation, groups, bias)
CASES = [
    ((1, 1, 5, 6), 2, 3, 1, 1, 1, 1, True),  # batch 1, one channel
    ((2, 3, 7, 6), 4, 3, 2, 1, 1, 1, True),  # stride 2
    ((1, 6, 5, 5), 6, 3, 1, 1, 1, 6, True),  # depthwise
    ((3, 4, 9, 8), 6, 3, 1, 2, 2, 2, False),  # dilation 2, grouped, no bias
    ((2, 5, 4, 4), 3, 1, 1, 0, 1, 1, True),  # 1x1: no im2col
    ((5, 3, 7, 9), 4, (3, 2), (2, 1), (1, 0), (1, 2), 1, True),  # 5 images: the image-by-image path
    ((4, 4, 6, 6), 4, 3, 1, 1, 1, 4, False),  # depthwise, image by image
]
IDS = [f"{c[0]}-o{c[1]}-k{c[2]}-s{c[3]}-p{c[4]}-d{c[5]}-g{c[6]}".replace(" ", "") for c in CASES]


def _conv(case, dtype=F64, seed=0):
    shape, O, k, s, p, d, g, bias = case
    return nn.Conv2d(shape[1], O, k, stride=s, padding=p, dilation=d, groups=g, bias=bias, dtype=dtype,
                     generator=seed)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_central_differences(case):
    x = np.random.default_rng(0).standard_normal(case[0])
    check_rop(_conv(case), x)
    check_rop(_conv(case), x, rx_zero=True)  # R{x} = 0: the model's input


@pytest.mark.parametrize("case", CASES[1:6:2], ids=IDS[1:6:2])
def test_float32_matches_float64(case):
    shape, O, k, s, p, d, g, bias = case
    taps = (shape[1] // g) * np.prod(np.broadcast_to(k, 2))
    y_shape = _conv(case)._layer.output_shape(shape)
    k_max = 2 * max(taps + 1, O // g * np.prod(np.broadcast_to(k, 2)), y_shape[0] * y_shape[2] * y_shape[3])
    x = np.random.default_rng(0).uniform(-2, 2, shape)
    check_rop_float32(lambda dt: _conv(case, dt), x, k_max)


def test_accumulates_grad_and_hv():
    """rop_backward adds dL/dθ to the gradient and R{dL/dθ} to hv, as backward adds its gradients."""
    rng = np.random.default_rng(4)
    m = _conv(CASES[1])
    x = rng.standard_normal(CASES[1][0])
    n = m._layer.num_params()
    v = rng.standard_normal(n)
    y = m(x)
    g, rg = rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    once = rop_pass(m, x, x, v, g, rg)
    hv = np.zeros(n)
    m._layer.bind_direction(v, hv, 0)
    buf = m.flatten_parameters_()
    buf.grads[...] = 0
    for _ in range(2):
        m._layer.forward(x)
        m._layer.rop_forward(x)
        m._layer.rop_backward(g, rg)
    np.testing.assert_allclose(buf.grads, 2 * once["grad"], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(hv, 2 * once["hv"], rtol=1e-13, atol=1e-13)


def test_frozen_conv_is_a_constant():
    m = _conv(CASES[1])
    m.requires_grad_(False)
    x = np.random.default_rng(5).standard_normal(CASES[1][0])
    ry, _, hv = check_rop(m, x)
    assert not hv.any()
    y = m._layer.forward(x)
    assert not m._layer.rop_forward(None).any()  # R{x} = 0 and no direction: R{y} = 0
    assert y.shape == ry.shape


def test_bad_input():
    m = _conv(CASES[1])
    x = np.zeros(CASES[1][0])
    with pytest.raises(ValueError, match="before forward"):
        m._layer.rop_forward(None)
    m(x)
    with pytest.raises(ValueError, match="bind_direction"):
        m._layer.rop_forward(x)
    n = m._layer.num_params()
    m._layer.bind_direction(np.zeros(n), np.zeros(n), 0)
    with pytest.raises(ValueError, match=r"rx must have the input's shape \(2, 3, 7, 6\)"):
        m._layer.rop_forward(np.zeros((2, 3, 7, 5)))
    with pytest.raises(TypeError, match="float64"):
        m._layer.rop_forward(x.astype(np.float32))
    with pytest.raises(ValueError, match="cannot hold"):
        m._layer.bind_direction(np.zeros(n - 1), np.zeros(n - 1), 0)
    y = m._layer.forward(x)
    m._layer.rop_forward(x)
    with pytest.raises(ValueError, match="shape of the last output"):
        m._layer.rop_backward(y, y[:1])
