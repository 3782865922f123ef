"""Thread control, build configuration, zero-copy inputs, GIL release."""

import importlib.metadata
import io
import threading
import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn._config import _C
from tests.conftest import HAVE_TORCH, assert_sum_close, matmul_terms, num_threads


def test_version_matches_metadata():
    assert isinstance(fastnn.__version__, str) and fastnn.__version__.count(".") == 2
    try:
        assert importlib.metadata.version("fastnn") == fastnn.__version__
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastnn is not installed (testing a work tree)")


def test_show_config_prints_flags_simd_threads():
    buf = io.StringIO()
    fastnn.show_config(file=buf)
    text = buf.getvalue()
    for key in ("fastnn", "isa", "simd", "cxx flags", "openmp", "threads", "eigen"):
        assert key in text
    assert f"threads     {fastnn.get_num_threads()}" in text or str(fastnn.get_num_threads()) in text


@pytest.mark.parametrize("n", [1, 2])
def test_parallel_regions_use_the_set_count(n):
    if fastnn.build_info()["openmp"] is None:
        pytest.skip("built without OpenMP")
    with num_threads(n):
        assert fastnn.get_num_threads() == n
        assert _C._parallel_threads_used(10**7) == n


def test_small_work_stays_on_one_thread():
    with num_threads(2):
        assert _C._parallel_threads_used(1000) == 1


def test_count_holds_in_other_python_threads():
    seen = []
    with num_threads(1):
        t = threading.Thread(target=lambda: seen.append((fastnn.get_num_threads(), _C._parallel_threads_used(10**7))))
        t.start()
        t.join()
    assert seen == [(1, 1)]


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_count_survives_torch_set_num_threads():
    import torch

    old = torch.get_num_threads()
    with num_threads(1):
        torch.set_num_threads(2)
        try:
            assert fastnn.get_num_threads() == 1
            assert _C._parallel_threads_used(10**7) == 1
        finally:
            torch.set_num_threads(old)


@pytest.mark.parametrize("bad", [0, -1])
def test_set_num_threads_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="n must be >= 1"):
        fastnn.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.5, "2", True, None])
def test_set_num_threads_rejects_non_int(bad):
    with pytest.raises(TypeError, match="n must be an int"):
        fastnn.set_num_threads(bad)


@pytest.mark.parametrize("view", ["C", "T", "colslice", "rowstride"])
def test_matmul_reads_views_without_copying(view):
    base = np.ones((2048, 2048), np.float32)
    a = {"C": base, "T": base.T, "colslice": base[:, :1024], "rowstride": base[::2]}[view]
    b = np.ones((a.shape[1], 4), np.float32)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        F.matmul(a, b)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < a.nbytes / 8, f"matmul allocated {peak} bytes for a {a.nbytes}-byte input"


def test_matmul_from_several_python_threads():
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((200, 300)), rng.standard_normal((300, 100))) for _ in range(4)]
    results = [None] * 4

    def work(i):
        for _ in range(5):
            results[i] = F.matmul(*pairs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (a, b), r in zip(pairs, results):
        assert_sum_close(r, a @ b, matmul_terms(a, b), a.shape[1])  # a@b: near-cancelling elements


def test_gil_is_released_during_compute():
    """Another Python thread keeps running while a long matmul computes."""
    a = np.ones((1500, 1500))
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(1)
            done.wait(0.001)

    t = threading.Thread(target=ticker)
    with num_threads(1):
        F.matmul(a, a)  # warm-up
        t.start()
        before = len(ticks)
        for _ in range(3):
            F.matmul(a, a)
        during = len(ticks) - before
    done.set()
    t.join()
    assert during > 20, "no Python thread ran while the kernels computed: the GIL was held"


def test_recycled_output_buffers_are_independent_and_correct():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((256, 512)).astype(np.float32) for _ in range(3)]
    outs = [F.relu_forward(x) for x in xs]  # large outputs come from the buffer pool
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.shares_memory(outs[i], outs[j])
    del outs
    again = [F.relu_forward(x) for x in reversed(xs)]  # reuses the freed buffers
    for x, y in zip(reversed(xs), again):
        assert np.array_equal(y, np.maximum(x, 0))
    del again
    assert fastnn.empty_cache() >= 3 * 256 * 512 * 4
    assert fastnn.empty_cache() == 0
