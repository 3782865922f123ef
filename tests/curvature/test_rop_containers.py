"""The image containers' R-operator: Residual (net/residual.h), Concat (net/concat.h),
FusedConvBatchNorm (Sequential's conv plan, folded in eval) and DenseBlock (net/dense_block.h: its
second feature and gradient buffers) compose their children's pairs as they compose forward and
backward; against central differences (float64) and float32 against float64; has_rop only when
every child has it; a small CNN's fastnn.hvp against torch's double backward."""

import numpy as np
import pytest

from fastnn import nn
from tests.curvature.rop_image import F64, check_rop_float32, rop_pass
from tests.curvature.test_layer_rop import check_rop


def _conv(c_in, c_out, dt, k=3, seed=0, **kw):
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, dtype=dt, generator=seed, **kw)


def _residual_conv_shortcut(dt):
    return nn.Residual(_conv(3, 4, dt, stride=2), _conv(3, 4, dt, k=1, stride=2, seed=1, bias=False))


def _residual_identity(dt):
    return nn.Residual(_conv(3, 3, dt, groups=3))


def _concat(dt):
    return nn.Concat(_conv(3, 2, dt), nn.MaxPool2d(3, stride=1, padding=1, dtype=dt), _conv(3, 1, dt, k=1, seed=2))


def _nested(dt):  # a Residual around a Concat, and a Concat holding a Residual
    inner = nn.Concat(_conv(3, 2, dt), nn.Residual(_conv(3, 3, dt, k=1, seed=3)))
    return nn.Residual(inner, _conv(3, 5, dt, k=1, seed=4))


MAKERS = {"residual-conv-shortcut": _residual_conv_shortcut, "residual-identity": _residual_identity,
          "concat": _concat, "nested": _nested}


@pytest.mark.parametrize("name", MAKERS)
@pytest.mark.parametrize("batch", [1, 5])
def test_matches_central_differences(name, batch):
    x = np.random.default_rng(0).permutation(batch * 3 * 6 * 5).reshape(batch, 3, 6, 5) * 0.01
    m = MAKERS[name](F64)
    assert m._layer.has_rop
    check_rop(m, x)
    check_rop(m, x, rx_zero=True)


@pytest.mark.parametrize("name", MAKERS)
def test_float32_matches_float64(name):
    x = np.random.default_rng(1).uniform(0, 2, (4, 3, 6, 5))  # >= 0: the max pool's argmax holds for |x|
    k = 2 * 4 * 6 * 5 * 2  # at most: R{dW}'s products over the batch and positions, two paths
    check_rop_float32(MAKERS[name], x, k)


def test_only_parameterless_children_give_zero():
    """R{x} = 0 through children without parameters is a view without data: zeros."""
    m = nn.Concat(nn.MaxPool2d(3, stride=1, padding=1, dtype=F64), nn.AvgPool2d(3, stride=1, padding=1, dtype=F64))
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 4))
    m._layer.forward(x)
    ry = m._layer.rop_forward(None)
    assert ry.shape == (2, 6, 4, 4) and not ry.any()
    r = nn.Residual(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False, dtype=F64))
    r._layer.forward(x)
    assert not r._layer.rop_forward(None).any()
    rx = np.ones_like(x)
    np.testing.assert_allclose(r._layer.rop_forward(rx), 2 * rx)  # avg of ones + identity


def test_has_rop_needs_every_child():
    class Py(nn.Module):
        def forward(self, x):
            return x

        def backward(self, g):
            return g

    assert not nn.Residual(Py())._layer.has_rop
    assert not nn.Concat(_conv(3, 2, F64), Py())._layer.has_rop
    m = nn.Residual(nn.Concat(_conv(3, 2, F64), Py()), _conv(3, 5, F64))
    assert not m._layer.has_rop
    m(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="no R-operator"):
        m._layer.rop_forward(None)


def _small_cnn(dt):
    """conv-BN-ReLU-pool, a Residual (conv-BN-ReLU-conv body), a bottleneck DenseBlock, global
    pooling and a Linear head."""
    import fastnn

    fastnn.manual_seed(11)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False, dtype=dt), nn.BatchNorm2d(4, dtype=dt), nn.ReLU(),
        nn.MaxPool2d(2, dtype=dt),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, dtype=dt), nn.BatchNorm2d(4, dtype=dt), nn.ReLU(),
                                  nn.Conv2d(4, 4, 3, padding=1, dtype=dt))),
        nn.DenseBlock(2, 4, growth_rate=2, bn_size=2, dtype=dt), nn.GlobalAvgPool2d(dtype=dt),
        nn.Linear(8, 3, dtype=dt))


def _torch_small_cnn():
    import torch
    from torch import nn as tnn

    from tests.models.torch_models import DenseBlock

    class Residual(tnn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return x + self.body(x)

    class GlobalAvgPool(tnn.Module):
        def forward(self, x):
            return torch.mean(x, dim=(2, 3))

    return tnn.Sequential(
        tnn.Conv2d(2, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.MaxPool2d(2),
        Residual(tnn.Sequential(tnn.Conv2d(4, 4, 3, padding=1), tnn.BatchNorm2d(4), tnn.ReLU(),
                                tnn.Conv2d(4, 4, 3, padding=1))),
        DenseBlock(2, 4, 2, bn_size=2), GlobalAvgPool(), tnn.Linear(8, 3)).double()


def test_small_cnn_hvp_matches_torch_double_backward():
    torch = pytest.importorskip("torch")
    import fastnn

    if not hasattr(fastnn, "hvp"):
        pytest.skip("fastnn.hvp is not merged in")
    rng = np.random.default_rng(7)
    model = _small_cnn(F64)
    assert model._layer.has_rop
    x = rng.standard_normal((5, 2, 8, 8))
    y = rng.integers(0, 3, 5)
    theta = model.flatten_parameters_().params
    theta[...] = rng.uniform(-1, 1, theta.size)
    v = rng.standard_normal(theta.size)
    tm = _torch_small_cnn()
    tm.load_state_dict({k: torch.from_numpy(np.array(t)) for k, t in model.state_dict().items()}, strict=False)
    tm.train()
    params = list(tm.parameters())
    assert sum(p.numel() for p in params) == theta.size
    g = torch.autograd.grad(torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y)), params,
                            create_graph=True)
    vs = torch.split(torch.from_numpy(v), [p.numel() for p in params])
    dot = sum((gi * vi.view_as(gi)).sum() for gi, vi in zip(g, vs))
    want = torch.cat([h.reshape(-1) for h in torch.autograd.grad(dot, params)]).numpy()
    got = fastnn.hvp(model, "cross_entropy", x, y, v)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_fused_conv_batchnorm(training, relu):
    """Sequential runs Conv2d + BatchNorm2d (+ ReLU) as one FusedConvBatchNorm, folded in eval mode:
    its R-op reruns the layers' own forward and composes theirs."""
    mods = [_conv(3, 4, F64), nn.BatchNorm2d(4, dtype=F64)] + ([nn.ReLU()] if relu else []) + [_conv(4, 2, F64, k=1)]
    m = nn.Sequential(*mods)
    assert m._layer.execution_plan[0].startswith("Conv2d+BatchNorm2d")
    m._layer.state()[0][1][...] = 0.2  # running mean, used in eval
    x = np.random.default_rng(3).standard_normal((3, 3, 5, 4))
    check_rop(m, x, training=training)


@pytest.mark.parametrize("bottleneck", [True, False])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("batch", [1, 4])
def test_dense_block(bottleneck, shared, batch):
    import fastnn

    fastnn.manual_seed(5)
    m = nn.DenseBlock(3, 3, growth_rate=2, bn_size=2 if bottleneck else None, dtype=F64)
    m._layer.shared_scratch = shared
    theta = m.flatten_parameters_().params
    theta[...] = np.random.default_rng(4).uniform(-1, 1, theta.size)
    x = np.random.default_rng(5).standard_normal((batch, 3, 5, 4))
    assert m._layer.has_rop
    check_rop(m, x)
    check_rop(m, x, rx_zero=True)
    check_rop(m, x, training=False)


def test_dense_block_dropout():
    m = nn.DenseBlock(2, 3, growth_rate=2, bn_size=2, drop_rate=0.3, dtype=F64)
    check_rop(m, np.random.default_rng(6).standard_normal((3, 3, 4, 4)))


def test_dense_block_float32_matches_float64():
    """Normwise: the batch statistics' normalization is not multilinear, so the terms' pass on
    absolute values does not bound it; its outputs are O(1) (normalized), and the worst error stays
    within 1e3 float32 eps of the largest value (~8 in float32 rounding units per layer)."""
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, (4, 3, 5, 4)).astype(np.float32)
    ms = {dt: nn.DenseBlock(2, 3, growth_rate=2, bn_size=2, dtype=dt) for dt in (np.float32, F64)}
    n = ms[F64]._layer.num_params()
    theta, v = rng.uniform(-1, 1, n).astype(np.float32), rng.uniform(-1, 1, n).astype(np.float32)
    rx, g, rg = (rng.uniform(-1, 1, s).astype(np.float32) for s in (x.shape, (4, 7, 5, 4), (4, 7, 5, 4)))
    out = {}
    for dt, m in ms.items():
        m.flatten_parameters_().params[...] = theta
        out[dt] = rop_pass(m, x.astype(dt), rx.astype(dt), v.astype(dt), g.astype(dt), rg.astype(dt))
    for key, want in out[F64].items():
        err = np.abs(out[np.float32][key] - want).max()
        assert err <= 1e3 * np.finfo(np.float32).eps * np.abs(want).max(), (key, err, np.abs(want).max())
