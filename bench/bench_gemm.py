"""GEMM: fastnn.matmul / bmm vs numpy's BLAS vs torch, float32 (BENCH.md 'gemm')."""

import numpy as np
import pytest

from fastnn import functional as F
from conftest import IMPLS, bench, need, torch

SHAPES = [(1024, 1024, 1024), (128, 784, 256), (256, 1024, 1024)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("m,k,n", SHAPES, ids=lambda v: str(v))
def test_matmul(benchmark, rng, impl, m, k, n):
    need(impl)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    expected = a @ b
    if impl == "fastnn":
        fn = lambda: F.matmul(a, b, out=c)  # noqa: E731
    elif impl == "numpy":
        fn = lambda: np.matmul(a, b, out=c)  # noqa: E731
    else:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        fn = lambda: torch.matmul(ta, tb, out=tc)  # noqa: E731
    bench(benchmark, f"gemm {m}x{k}x{n}", fn)
    np.testing.assert_allclose(c, expected, rtol=1e-3, atol=1e-3 * np.sqrt(k))
    benchmark.extra_info["gflops"] = 2.0 * m * k * n / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("impl", IMPLS)
def test_bmm(benchmark, rng, impl):
    need(impl)
    a = rng.standard_normal((64, 128, 128), dtype=np.float32)
    b = rng.standard_normal((64, 128, 128), dtype=np.float32)
    c = np.empty_like(a)
    if impl == "fastnn":
        fn = lambda: F.bmm(a, b, out=c)  # noqa: E731
    elif impl == "numpy":
        fn = lambda: np.matmul(a, b, out=c)  # noqa: E731
    else:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        fn = lambda: torch.bmm(ta, tb, out=tc)  # noqa: E731
    bench(benchmark, "bmm 64x(128x128x128)", fn)
    np.testing.assert_allclose(c, a @ b, rtol=1e-3, atol=1e-3)
    benchmark.extra_info["gflops"] = 2.0 * 64 * 128**3 / benchmark.stats.stats.median / 1e9
