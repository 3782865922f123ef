"""Residual and Concat containers, training forward+backward at the cnn workload's 14x14 stage
(batch 128, 32 channels), fastnn vs torch; "fastnn-children" runs the same layers without the
container (the body alone; the branches one after another), so the difference is the container's
own cost: the sum of the two paths and of their gradients (Residual), the copies into and out of
the channel slices (Concat)."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from conftest import bench, need, torch

SHAPE = (128, 32, 14, 14)


def _fastnn_body():
    return nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))


def _fastnn_branches():
    return [nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()),
            nn.Sequential(nn.Conv2d(32, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()),
            nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()), nn.Identity()]


def _torch_modules(kind):
    tn = torch.nn
    if kind == "residual":
        body = tn.Sequential(tn.Conv2d(32, 32, 3, padding=1, bias=False), tn.BatchNorm2d(32), tn.ReLU(),
                             tn.Conv2d(32, 32, 3, padding=1, bias=False), tn.BatchNorm2d(32))

        class Residual(tn.Module):
            def __init__(self):
                super().__init__()
                self.body = body

            def forward(self, x):
                return self.body(x) + x

        return Residual()
    branches = [tn.Sequential(tn.Conv2d(32, 16, 1, bias=False), tn.BatchNorm2d(16), tn.ReLU()),
                tn.Sequential(tn.Conv2d(32, 16, 3, padding=1, bias=False), tn.BatchNorm2d(16), tn.ReLU()),
                tn.Sequential(tn.Conv2d(32, 16, 1, bias=False), tn.BatchNorm2d(16), tn.ReLU()), tn.Identity()]

    class Concat(tn.Module):
        def __init__(self):
            super().__init__()
            self.branches = tn.ModuleList(branches)

        def forward(self, x):
            return torch.cat([b(x) for b in self.branches], 1)

    return Concat()


def case(impl, kind, x):
    out_channels = 32 if kind == "residual" else 80
    g = np.random.default_rng(1).standard_normal((x.shape[0], out_channels) + x.shape[2:], dtype=np.float32)
    if impl == "torch":
        m = _torch_modules(kind)
        tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

        def fn():
            tx.grad = None
            m.zero_grad()
            m(tx).backward(tg)

        return fn
    fastnn.manual_seed(0)
    if impl == "fastnn":
        m = nn.Residual(_fastnn_body()) if kind == "residual" else nn.Concat(*_fastnn_branches())

        def fn():
            m(x)
            m.backward(g)

        return fn
    parts = [_fastnn_body()] if kind == "residual" else _fastnn_branches()
    slices = np.split(g, [16, 32, 48], axis=1) if kind == "concat" else [g]
    slices = [np.ascontiguousarray(s) for s in slices]

    def fn():
        for m, s in zip(parts, slices):
            m(x)
            m.backward(s)

    return fn


@pytest.mark.parametrize("kind", ["residual", "concat"])
@pytest.mark.parametrize("impl", ["fastnn", "fastnn-children", "torch"])
def test_container(benchmark, rng, impl, kind):
    need(impl)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    bench(benchmark, f"{kind} train fwd+bwd {'x'.join(map(str, SHAPE))}", case(impl, kind, x), rounds=10)


@pytest.mark.parametrize("impl", ["fastnn"])
def test_recompute_bn_statistics(benchmark, rng, impl):
    """The exact post-training statistics pass: 3 BatchNorms of a small residual CNN over 2048 images."""
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.Residual(_fastnn_body()), nn.ReLU())
    X = rng.standard_normal((2048, 1, 28, 28), dtype=np.float32)
    bench(benchmark, "recompute_bn_statistics 3 BN, 2048x1x28x28", lambda: nn.recompute_bn_statistics(model, X),
          rounds=3)
