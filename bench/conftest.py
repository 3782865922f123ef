"""Benchmark setup: pin every library to the same thread count *before* numpy/torch start their pools.

Run (see README.md):  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/compare.py
"""

import os

THREADS = int(os.environ.get("FASTNN_BENCH_THREADS", "2"))
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)
# OpenBLAS's workers keep spinning after numpy's call returns and starve whatever runs next on
# 2 cores (BUILD-NOTES.md section 3: 512^2 matmuls back to back 9.3 ms instead of 3.5 ms). Let
# them sleep soon, so that each library is timed without the previous one's threads in the way.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastnn  # noqa: E402

fastnn.set_num_threads(THREADS)

try:
    import torch

    torch.set_num_threads(THREADS)
except ImportError:  # peers that are missing are skipped, and the table says so
    torch = None

try:
    from threadpoolctl import ThreadpoolController, threadpool_info, threadpool_limits

    threadpool_limits(THREADS)
    # ... but not the OpenBLAS that fastnn loaded: fastnn calls it one thread per tile from its
    # own threads, and a library pool of 2 under each of them made conv2d's backward 20x slower.
    _path = getattr(fastnn, "gemm_backend", dict)().get("path")
    if _path:
        ThreadpoolController().select(filepath=[_path, os.path.realpath(_path)]).limit(limits=1)
except ImportError:
    threadpool_info = None


def pytest_report_header(config):
    lines = [f"threads: {THREADS}", f"fastnn {fastnn.__version__} isa={fastnn.build_info()['isa']}"]
    lines.append(f"torch {torch.__version__}" if torch else "torch: not installed (torch rows skipped)")
    if threadpool_info:
        for pool in threadpool_info():
            lines.append(f"{pool['internal_api']} {pool.get('version')} {pool.get('architecture')} "
                         f"threads={pool['num_threads']} ({os.path.basename(pool['filepath'])})")
    return lines


IMPLS = ["fastnn", "numpy", "torch"]


def need(impl):
    """Skip a peer that is not installed."""
    if impl == "torch" and torch is None:
        pytest.skip("torch not installed")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def bench(benchmark, group, fn, rounds=None):
    """Warm up, then time fn; results of all implementations of one group land in one table."""
    benchmark.group = group
    fn()
    if rounds:
        return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    return benchmark(fn)
