"""Conv2d forward and forward+backward (dx, dW, db) at BENCH.md's shapes: the micro benchmark
(batch 64, 32 -> 64 channels, 28x28, 3x3, pad 1) and the cnn workload's two convolutions at
batch 128 (1 -> 32 at 28x28, 32 -> 64 at 14x14), fastnn vs torch.nn.functional.conv2d."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from conftest import bench, need, torch

# id: (N, C, H, W), out_channels, kernel, padding
SHAPES = {
    "micro 64x32x28x28->64 k3p1": ((64, 32, 28, 28), 64, 3, 1),
    "cnn conv1 128x1x28x28->32 k3p1": ((128, 1, 28, 28), 32, 3, 1),
    "cnn conv2 128x32x14x14->64 k3p1": ((128, 32, 14, 14), 64, 3, 1),
}


def conv_case(rng, shape, out, k):
    x = rng.standard_normal(shape, dtype=np.float32)
    w = (rng.standard_normal((out, shape[1], k, k)) / np.sqrt(shape[1] * k * k)).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32)
    return x, w, b


def conv_fn(impl, x, w, b, padding, backward):
    """forward (and backward with a fixed upstream gradient) with `impl`; returns (y, dx, dW, db)."""
    g = np.random.default_rng(1).standard_normal(R.conv2d_forward(x[:1], w, b, padding=padding).shape[1:],
                                                 dtype=np.float32)
    g = np.ascontiguousarray(np.broadcast_to(g, (x.shape[0],) + g.shape))
    if impl == "fastnn":
        def fn():
            y = F.conv2d_forward(x, w, b, padding=padding)
            return (y, *F.conv2d_backward(g, x, w, padding=padding)) if backward else (y,)
        return fn
    tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, g))
    if backward:
        tx.requires_grad_(), tw.requires_grad_(), tb.requires_grad_()

    def fn():
        if not backward:
            with torch.no_grad():
                return (torch.nn.functional.conv2d(tx, tw, tb, padding=padding),)
        tx.grad = tw.grad = tb.grad = None
        y = torch.nn.functional.conv2d(tx, tw, tb, padding=padding)
        y.backward(tg)
        return y, tx.grad, tw.grad, tb.grad
    return fn


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("impl", ["fastnn", "torch"])
def test_conv2d(benchmark, rng, impl, shape_id, backward):
    need(impl)
    shape, out, k, padding = SHAPES[shape_id]
    x, w, b = conv_case(rng, shape, out, k)
    fn = conv_fn(impl, x, w, b, padding, backward)
    bench(benchmark, f"conv2d {'fwd+bwd' if backward else 'fwd'} {shape_id}", fn, rounds=20)
    # the result agrees with fastnn's (checked against the reference in tests/kernels/test_conv.py)
    want = conv_fn("fastnn", x, w, b, padding, backward)()
    for got, ref in zip(fn(), want):
        np.testing.assert_allclose(np.asarray(got.detach() if hasattr(got, "detach") else got), ref,
                                   rtol=2e-3, atol=2e-3 * float(np.abs(ref).max()))


# --- the layers (nn.Conv2d, and Conv2d -> BatchNorm2d -> ReLU as one layer) ---------------------

# the cnn workload's conv blocks at batch 128: (N, C, H, W), out_channels
BLOCKS = {
    "cnn block1 128x1x28x28->32": ((128, 1, 28, 28), 32),
    "cnn block2 128x32x14x14->64": ((128, 32, 14, 14), 64),
}


def _block_torch(shape, out, layers, rng):
    """torch.nn.Sequential of the same kinds of layers, with the fastnn model's weights and statistics."""
    mods = {"conv": lambda: torch.nn.Conv2d(shape[1], out, 3, padding=1, bias=False),
            "bn": lambda: torch.nn.BatchNorm2d(out), "relu": torch.nn.ReLU}
    return torch.nn.Sequential(*(mods[k]() for k in layers))


def _block(impl, shape, out, layers, rng, eval_mode):
    """(model, run) for the layers ("conv", "bn", "relu") of one cnn block: fastnn's Sequential
    (fused as it plans it), fastnn's with an Identity after the conv (conv, then BN+ReLU: the
    'unfused' column), or torch's; run() is forward, or forward+backward in training."""
    from fastnn import nn

    kinds = {"conv": lambda: nn.Conv2d(shape[1], out, 3, padding=1, bias=False, generator=0),
             "bn": lambda: nn.BatchNorm2d(out), "relu": nn.ReLU}
    model = nn.Sequential(*(kinds[k]() for k in layers))
    bn = next((m for m in model if isinstance(m, nn.BatchNorm2d)), None)
    if bn is not None:  # statistics and an affine that are not the identity
        bn.running_mean[...] = rng.standard_normal(out) * 0.1
        bn.running_var[...] = rng.uniform(0.5, 2, out)
        bn.weight.data[...] = rng.uniform(0.5, 1.5, out)
        bn.bias.data[...] = rng.standard_normal(out) * 0.1
    x = rng.standard_normal(shape, dtype=np.float32) if layers[0] == "conv" else \
        rng.standard_normal((shape[0], out) + shape[2:], dtype=np.float32)
    g = rng.standard_normal(model._layer.output_shape(x.shape), dtype=np.float32)
    if impl == "unfused":
        model = nn.Sequential(model[0], nn.Identity(), *list(model)[1:])
    if impl in ("fastnn", "unfused"):
        if eval_mode:
            model.eval()
            return model, x, g, lambda: (model(x),)

        def run():
            model.zero_grad()
            y = model(x)
            return y, model.backward(g)
        return model, x, g, run
    t = _block_torch(shape, out, layers, rng)
    t.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in model.state_dict().items()})
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    if eval_mode:
        t.eval()

        def run():
            with torch.no_grad():
                return (t(tx),)
        return t, x, g, run
    tx.requires_grad_()

    def run():
        t.zero_grad()
        tx.grad = None
        y = t(tx)
        y.backward(tg)
        return y, tx.grad
    return t, x, g, run


def _agree(got, want):
    for a, b in zip(got, want):
        a = np.asarray(a.detach() if hasattr(a, "detach") else a)
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * float(np.abs(b).max()))


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("block", list(BLOCKS))
@pytest.mark.parametrize("impl", ["fastnn", "torch"])
def test_conv2d_layer(benchmark, impl, block, backward):
    """nn.Conv2d (bias-free, as before a BatchNorm) vs torch.nn.Conv2d, training mode."""
    need(impl)
    shape, out = BLOCKS[block]
    rng = np.random.default_rng(0)
    _, _, _, run = _block(impl, shape, out, ["conv"], rng, not backward)
    bench(benchmark, f"Conv2d layer {'fwd+bwd' if backward else 'fwd'} {block}", run, rounds=20)
    _agree(run(), _block("fastnn", shape, out, ["conv"], np.random.default_rng(0), not backward)[3]())


@pytest.mark.parametrize("block", list(BLOCKS))
@pytest.mark.parametrize("impl", ["fastnn", "unfused", "torch"])
def test_conv_bn_relu_eval(benchmark, impl, block):
    """Inference of a conv -> BN -> ReLU block: fastnn runs BN's folded affine and the ReLU in the
    conv's output pass; 'unfused' is the same fastnn layers with the conv run on its own (then
    BN+ReLU as one pass); torch in eval mode under no_grad."""
    need(impl)
    shape, out = BLOCKS[block]
    layers = ["conv", "bn", "relu"]
    model, _, _, run = _block(impl, shape, out, layers, np.random.default_rng(0), True)
    if impl != "torch":
        assert model.execution_plan[0] == ("Conv2d+BatchNorm2d+relu" if impl == "fastnn" else "Conv2d")
    bench(benchmark, f"conv+bn+relu eval {block}", run, rounds=20)
    _agree(run(), _block("fastnn", shape, out, layers, np.random.default_rng(0), True)[3]())


@pytest.mark.parametrize("block", list(BLOCKS))
@pytest.mark.parametrize("impl", ["fastnn", "unfused", "torch"])
def test_conv_bn_relu_train(benchmark, impl, block):
    """Training forward+backward of a conv -> BN -> ReLU block (what the cnn's epoch runs)."""
    need(impl)
    shape, out = BLOCKS[block]
    layers = ["conv", "bn", "relu"]
    _, _, _, run = _block(impl, shape, out, layers, np.random.default_rng(0), False)
    bench(benchmark, f"conv+bn+relu train fwd+bwd {block}", run, rounds=20)
    _agree(run(), _block("fastnn", shape, out, layers, np.random.default_rng(0), False)[3]())


@pytest.mark.parametrize("shape", [(128, 32, 28, 28), (128, 64, 14, 14)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", ["fastnn", "torch"])
def test_batchnorm2d_relu_train(benchmark, impl, shape):
    """BatchNorm2d + ReLU, training forward+backward, at the cnn's feature maps (fastnn: one fused layer)."""
    need(impl)
    rng = np.random.default_rng(0)
    _, _, _, run = _block(impl, (shape[0], 1) + shape[2:], shape[1], ["bn", "relu"], rng, False)
    bench(benchmark, f"BatchNorm2d+ReLU train fwd+bwd {'x'.join(map(str, shape))}", run, rounds=20)
    _agree(run(), _block("fastnn", (shape[0], 1) + shape[2:], shape[1], ["bn", "relu"],
                         np.random.default_rng(0), False)[3]())
