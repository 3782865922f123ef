"""The R-operator pair of every dense layer (layers/layer.h) against central differences, float64:
rop_forward = d/dt forward(x + t rx) at θ + t v, and rop_backward's (dx, R{dx}) and (dθ, R{dθ})
against backward at those points with the upstream gradient g + t rg."""

import numpy as np
import pytest

from fastnn import nn

EPS = 1e-6
F64 = np.float64


def _perturbed(layer, buf, theta, v, t):
    if buf is not None:
        buf.params[...] = theta + t * v


def check_rop(module, x, training=True, seed=3, rtol=1e-6, atol=1e-7, rx_zero=False):
    rng = np.random.default_rng(1)
    layer = module._layer
    buf = module.flatten_parameters_()
    n = layer.num_params()
    theta = buf.params.copy() if buf is not None else None
    v = rng.standard_normal(n) if n else None
    hv = np.zeros(n)
    if n:
        layer.bind_direction(v, hv, 0)
        if not layer.params_trainable:  # frozen: the parameters are constants, the direction is ignored
            v = np.zeros(n)
    rx = np.zeros_like(x) if rx_zero else rng.standard_normal(x.shape)
    fwd = lambda xx: layer.forward(np.ascontiguousarray(xx), training, seed, 0, True)

    y = fwd(x)
    ry = layer.rop_forward(None if rx_zero else rx, training, seed, 0, True)
    outs = []
    for t in (EPS, -EPS):
        _perturbed(layer, buf, theta, v, t)
        outs.append(fwd(x + t * rx))
    _perturbed(layer, buf, theta, v, 0)
    fd = (outs[0] - outs[1]) / (2 * EPS)
    scale = 1 + np.abs(fd).max()
    np.testing.assert_allclose(ry, fd, rtol=rtol, atol=atol * scale, err_msg="rop_forward")

    g, rg = rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    # plain backward at θ: the reference for dx and dθ
    if buf is not None:
        buf.grads[...] = 0
    fwd(x)
    dx_ref = layer.backward(g, True)
    dtheta_ref = buf.grads.copy() if buf is not None else None

    if buf is not None:
        buf.grads[...] = 0
    hv[...] = 0
    fwd(x)
    layer.rop_forward(None if rx_zero else rx, training, seed, 0, True)
    dx, rdx = layer.rop_backward(g, rg, True)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12, err_msg="rop_backward's dx")
    if buf is not None:
        np.testing.assert_allclose(buf.grads, dtheta_ref, rtol=1e-12, atol=1e-12, err_msg="rop_backward's dθ")

    dxs, dts = [], []
    for t in (EPS, -EPS):
        _perturbed(layer, buf, theta, v, t)
        if buf is not None:
            buf.grads[...] = 0
        fwd(x + t * rx)
        dxs.append(layer.backward(g + t * rg, True))
        if buf is not None:
            dts.append(buf.grads.copy())
    _perturbed(layer, buf, theta, v, 0)
    fd_dx = (dxs[0] - dxs[1]) / (2 * EPS)
    np.testing.assert_allclose(rdx, fd_dx, rtol=rtol, atol=atol * (1 + np.abs(fd_dx).max()), err_msg="R{dx}")
    if n:
        fd_dt = (dts[0] - dts[1]) / (2 * EPS)
        if layer.params_trainable:
            np.testing.assert_allclose(hv, fd_dt, rtol=rtol, atol=atol * (1 + np.abs(fd_dt).max()), err_msg="R{dθ}")
        else:
            assert not hv.any()
    return ry, rdx, hv


def x_of(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


ACTIVATIONS = [
    lambda: nn.ReLU(dtype=F64), lambda: nn.LeakyReLU(0.1, dtype=F64), lambda: nn.ELU(0.7, dtype=F64),
    lambda: nn.SELU(dtype=F64), lambda: nn.Sigmoid(dtype=F64), lambda: nn.Tanh(dtype=F64),
    lambda: nn.RReLU(dtype=F64),
]


@pytest.mark.parametrize("make", ACTIVATIONS, ids=["relu", "leaky", "elu", "selu", "sigmoid", "tanh", "rrelu"])
@pytest.mark.parametrize("shape", [(1, 5), (7, 3), (2, 3, 4)])
def test_pointwise_activations(make, shape):
    check_rop(make(), x_of(shape))


def test_rrelu_eval_and_zero_rx():
    check_rop(nn.RReLU(dtype=F64), x_of((4, 6)), training=False)
    ry, rdx, _ = check_rop(nn.Tanh(dtype=F64), x_of((4, 6)), rx_zero=True)
    assert not ry.any()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ["none", "relu", "tanh", "sigmoid", "leaky_relu"])
@pytest.mark.parametrize("n", [1, 9])
def test_linear(bias, activation, n):
    m = nn.Linear(5, 4, bias=bias, activation=activation, dtype=F64)
    check_rop(m, x_of((n, 5)))
    check_rop(m, x_of((n, 5)), rx_zero=True)


def test_linear_wide_and_narrow():
    check_rop(nn.Linear(3, 40, dtype=F64), x_of((6, 3)))  # not the narrow kernel
    check_rop(nn.Linear(40, 2, dtype=F64), x_of((6, 40)))


def test_frozen_linear_is_a_constant():
    m = nn.Linear(4, 3, dtype=F64)
    for p in m.parameters():
        p.requires_grad = False
    m._rebind()
    _, _, hv = check_rop(m, x_of((5, 4)))
    assert not hv.any()


def test_maxout_dropout_flatten_identity():
    check_rop(nn.Maxout(3, dtype=F64), x_of((4, 12)))
    check_rop(nn.Dropout(0.4, dtype=F64), x_of((6, 7)))
    check_rop(nn.Dropout(0.4, dtype=F64), x_of((6, 7)), training=False)
    check_rop(nn.Flatten(dtype=F64), x_of((3, 2, 4)))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm1d(training, affine):
    m = nn.BatchNorm1d(4, affine=affine, dtype=F64)
    if affine:
        rng = np.random.default_rng(5)
        m.flatten_parameters_().params[...] = rng.standard_normal(8)
    m._layer.state()[0][1][...] = 0.3  # running mean, used in eval
    check_rop(m, x_of((6, 4)) * 2 + 1, training=training)
    check_rop(m, x_of((5, 4, 3)), training=training)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm2d(training):
    m = nn.BatchNorm2d(3, dtype=F64)
    m.flatten_parameters_().params[...] = np.random.default_rng(6).standard_normal(6)
    check_rop(m, x_of((2, 3, 4, 5)), training=training)


def _sequential(*mods):
    return nn.Sequential(*mods)


@pytest.mark.parametrize("training", [True, False])
def test_sequential_with_fusions(training):
    """Linear+ReLU, BatchNorm+ReLU+Dropout and BatchNorm+ReLU run fused: their R-ops are the fused layers'."""
    m = _sequential(nn.Linear(5, 6, dtype=F64), nn.ReLU(dtype=F64), nn.BatchNorm1d(6, dtype=F64),
                    nn.ReLU(dtype=F64), nn.Dropout(0.3, dtype=F64), nn.Linear(6, 4, dtype=F64),
                    nn.BatchNorm1d(4, dtype=F64), nn.ReLU(dtype=F64), nn.Linear(4, 3, dtype=F64), nn.Tanh(dtype=F64))
    # random parameters: BatchNorm's default affine maps a ReLU's zeros exactly onto the next ReLU's kink
    buf = m.flatten_parameters_()
    buf.params[...] = np.random.default_rng(2).standard_normal(buf.params.size) * 0.7
    plan = m._layer.execution_plan
    assert "BatchNorm1d+relu+dropout" in plan and "Linear+relu" in plan and "BatchNorm1d+relu" in plan
    check_rop(m, x_of((8, 5)), training=training)


def test_sequential_unfused_and_nested():
    m = _sequential(nn.Flatten(dtype=F64), nn.Linear(6, 5, dtype=F64), nn.ELU(dtype=F64),
                    _sequential(nn.Linear(5, 5, dtype=F64), nn.Sigmoid(dtype=F64)), nn.Maxout(5, dtype=F64))
    check_rop(m, x_of((4, 2, 3)))


def test_has_rop_and_errors():
    class Py(nn.Module):
        def forward(self, x):
            return x

        def backward(self, g):
            return g

    assert nn.Linear(2, 2)._layer.has_rop
    seq = nn.Sequential(nn.Linear(2, 2), Py())
    assert not seq._layer.has_rop
    with pytest.raises(ValueError, match="no R-operator"):
        seq._layer.rop_forward(None)
    lin = nn.Linear(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="before forward"):
        nn.Linear(2, 3, dtype=F64)._layer.rop_forward(None)
    lin._layer.bind_direction(np.zeros(9), np.zeros(9), 0)
    lin(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="rx must have the input's shape"):
        lin._layer.rop_forward(np.zeros((3, 2)))
