"""GEMM: fastnn.matmul / bmm vs numpy's BLAS vs torch, float32 (BENCH.md 'gemm'), in one process.

bench/gemm_table.py measures the same products with one process per library, at 1 and 2 threads,
in float64 too, as GFLOP/s and % of the FMA peak."""

import numpy as np
import pytest

from fastnn import functional as F
from conftest import IMPLS, bench, need, torch

# issue 8's table: the MLP's and the im2col convolutions' products
SHAPES = [(1024, 1024, 1024), (128, 784, 256), (256, 1024, 1024), (128, 3136, 128), (6272, 288, 64), (25088, 9, 32)]
# the backward passes' operands come as transposed views (read in place by every library)
VARIANTS = {"NN": "", "TN": " A^T B", "NT": " A B^T"}


def record_gflops(benchmark, flops):
    if benchmark.stats:  # None under --benchmark-disable (one untimed call)
        benchmark.extra_info["gflops"] = flops / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("m,k,n", SHAPES, ids=lambda v: str(v))
def test_matmul(benchmark, rng, impl, variant, m, k, n):
    need(impl)
    a = rng.standard_normal((k, m), dtype=np.float32).T if variant[0] == "T" else rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((n, k), dtype=np.float32).T if variant[1] == "T" else rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    expected = a @ b
    if impl == "fastnn":
        fn = lambda: F.matmul(a, b, out=c)  # noqa: E731
    elif impl == "numpy":
        fn = lambda: np.matmul(a, b, out=c)  # noqa: E731
    else:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        fn = lambda: torch.matmul(ta, tb, out=tc)  # noqa: E731
    bench(benchmark, f"gemm {m}x{k}x{n}{VARIANTS[variant]}", fn)
    np.testing.assert_allclose(c, expected, rtol=1e-3, atol=1e-3 * np.sqrt(k))
    record_gflops(benchmark, 2.0 * m * k * n)


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
    record_gflops(benchmark, 2.0 * 64 * 128**3)
