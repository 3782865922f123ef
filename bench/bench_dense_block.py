"""DenseNet-BC's blocks, forward+backward, fastnn vs torch in the same run:

- a dense block, k = 12, 16 layers, bn_size 4, on (64, 24, 28, 28) (-> 216 channels), training
  mode: "fastnn" recomputes the layers' first BN-ReLU outputs into one shared buffer in backward
  (Pleiss et al. 2017), "fastnn-kept" keeps one per layer; torch is torchvision's _DenseBlock
  written with torch.nn (memory_efficient=False: it concatenates the features at every layer);
- the same block's eval-mode forward (inference);
- the transition after it, (64, 216, 28, 28) -> 108 channels at 14x14: "fastnn" pools before the
  1x1 conv (they commute: 4x fewer multiply-adds), "fastnn-conv-first" runs torchvision's order.

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python:. python bench/compare.py -k dense_block
Indicative (2026-12-02, load average ~5 on the 2 cores, so wall times swing 3x between runs): per
fastnn fwd+bwd, 1 thread, CPU time: shared 1.02 s, kept 0.95 s (recompute +6%); transition
pool-first 63-99 ms vs conv-first 83-137 ms (pool-first faster in all 4 runs); eval forward
fastnn 281 ms vs torch 1258 ms.
Memory figures of the block (its own buffers, the layers' and the buffers a per-layer design
would hold instead): python bench/bench_dense_block.py
"""

from collections import OrderedDict

import numpy as np
import pytest

from fastnn import nn
from conftest import bench, need, torch

N, C0, K, LAYERS, BN_SIZE, HW = 64, 24, 12, 16, 4, 28


def torch_dense_block():
    tnn = torch.nn

    class DenseLayer(tnn.Sequential):
        def __init__(self, c):
            super().__init__(OrderedDict([
                ("norm1", tnn.BatchNorm2d(c)), ("relu1", tnn.ReLU()), ("conv1", tnn.Conv2d(c, BN_SIZE * K, 1, bias=False)),
                ("norm2", tnn.BatchNorm2d(BN_SIZE * K)), ("relu2", tnn.ReLU()),
                ("conv2", tnn.Conv2d(BN_SIZE * K, K, 3, padding=1, bias=False))]))

    class DenseBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            for i in range(LAYERS):
                self.add_module(f"denselayer{i + 1}", DenseLayer(C0 + i * K))

        def forward(self, x):
            features = [x]
            for layer in self.children():
                features.append(layer(torch.cat(features, 1)))
            return torch.cat(features, 1)

    return DenseBlock()


def fwd_bwd(impl, model, x, g):
    if impl.startswith("fastnn"):
        def fn():
            model(x)
            model.backward(g)
        return fn
    tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

    def fn():
        tx.grad = None
        model.zero_grad(set_to_none=True)
        model(tx).backward(tg)
    return fn


@pytest.mark.parametrize("impl", ["fastnn", "fastnn-kept", "torch"])
def test_dense_block(benchmark, rng, impl):
    need(impl)
    x = rng.standard_normal((N, C0, HW, HW), dtype=np.float32)
    g = rng.standard_normal((N, C0 + LAYERS * K, HW, HW), dtype=np.float32)
    if impl == "torch":
        model = torch_dense_block().train()
    else:
        model = nn.DenseBlock(LAYERS, C0, K, bn_size=BN_SIZE)
        model.shared_scratch = impl == "fastnn"
    bench(benchmark, f"dense block fwd+bwd {N}x{C0}x{HW}x{HW} k={K} L={LAYERS} bn_size={BN_SIZE}",
          fwd_bwd(impl, model, x, g), rounds=5)


@pytest.mark.parametrize("impl", ["fastnn", "torch"])
def test_dense_block_eval(benchmark, rng, impl):
    """Inference: the eval-mode forward alone."""
    need(impl)
    x = rng.standard_normal((N, C0, HW, HW), dtype=np.float32)
    if impl == "torch":
        model, tx = torch_dense_block().eval(), torch.from_numpy(x)

        def fn():
            with torch.no_grad():
                return model(tx)
    else:
        model = nn.DenseBlock(LAYERS, C0, K, bn_size=BN_SIZE).eval()

        def fn():
            return model(x)
    bench(benchmark, f"dense block eval fwd {N}x{C0}x{HW}x{HW} k={K} L={LAYERS} bn_size={BN_SIZE}", fn, rounds=5)


@pytest.mark.parametrize("impl", ["fastnn", "fastnn-conv-first", "torch"])
def test_transition(benchmark, rng, impl):
    need(impl)
    c = C0 + LAYERS * K
    x = rng.standard_normal((N, c, HW, HW), dtype=np.float32)
    g = rng.standard_normal((N, c // 2, HW // 2, HW // 2), dtype=np.float32)
    if impl == "torch":
        tnn = torch.nn
        model = tnn.Sequential(tnn.BatchNorm2d(c), tnn.ReLU(), tnn.Conv2d(c, c // 2, 1, bias=False), tnn.AvgPool2d(2))
    elif impl == "fastnn":
        model = nn.Transition(c, c // 2)
    else:
        model = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2))
    bench(benchmark, f"transition fwd+bwd {N}x{c}x{HW}x{HW}->{c // 2}", fwd_bwd(impl, model, x, g), rounds=10)


def memory_figures():
    """MB of the block's activation buffers at the benchmark's shape (float32), by design."""
    mb = N * HW * HW * 4 / 2**20  # one channel map of the batch
    c_out, widest = C0 + LAYERS * K, C0 + (LAYERS - 1) * K
    per_layer_inputs = sum(C0 + i * K for i in range(LAYERS))
    mid = BN_SIZE * K
    rows = [
        ("feature buffer (N, C0 + L k)", c_out),
        ("gradient buffer (N, C0 + L k)", c_out),
        ("BN1-ReLU outputs, shared + recomputed (widest layer)", widest),
        ("   ... kept per layer instead (sum of c_i)", per_layer_inputs),
        ("1x1 convs' input gradient, shared", widest),
        ("   ... one per layer instead", per_layer_inputs),
        ("BN2-ReLU output, conv2's and BN2's input gradients, shared", 3 * mid),
        ("   ... kept per layer instead", 3 * mid * LAYERS),
        ("per layer: conv1 output (BN2's input) and conv2 output, x L", LAYERS * (mid + K)),
        ("convs' im2col workspace (8 chunks of one image's patches), shared", 8 * 9 * mid / N),
        ("   ... one per conv2 instead", LAYERS * 8 * 9 * mid / N),
        ("torch (no checkpointing): concatenated inputs + BN1 + ReLU1 outputs, x L", 3 * per_layer_inputs),
    ]
    for name, channels in rows:
        print(f"{name:<80} {channels:>7.0f} channel maps {channels * mb:8.1f} MB")


def measured_memory():
    """Heap bytes (glibc mallinfo2) that a forward+backward adds to a built block, per design."""
    import ctypes
    import ctypes.util

    class MallInfo2(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2

    def heap():
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd

    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C0, HW, HW), dtype=np.float32)
    g = rng.standard_normal((N, C0 + LAYERS * K, HW, HW), dtype=np.float32)
    for shared in (True, False):
        model = nn.DenseBlock(LAYERS, C0, K, bn_size=BN_SIZE)
        model.shared_scratch = shared
        before = heap()
        model(x)
        model.backward(g)
        print(f"measured, shared_scratch={shared}: {(heap() - before) / 2**20:.1f} MB")


if __name__ == "__main__":
    memory_figures()
    measured_memory()
