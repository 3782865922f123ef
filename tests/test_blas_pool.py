"""_blas_pool.quiet: other OpenBLAS copies' idle workers sleep while fastnn runs, and nothing the
user set changes: the thread count is never touched and each library's thread_timeout gets back
the value it had. Speed is measured in bench/blas_pool.py, never asserted here.
"""

import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastnn
from fastnn import _blas_pool, nn, optim
from fastnn import functional as F
from fastnn.functional._common import _guard

from .isolation import child_env


def numpy_has_openblas():
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return "openblas" in str(blas.get("name", "")).lower()


needs_openblas = pytest.mark.skipif(not (sys.platform.startswith("linux") and numpy_has_openblas()),
                                    reason="numpy's BLAS is not OpenBLAS on Linux: the guard has nothing to do")


def numpy_pool():
    """The guard's _Pool of numpy's own OpenBLAS (the library numpy's core extension maps)."""
    core = np._core._multiarray_umath.__file__ if hasattr(np, "_core") else np.core._multiarray_umath.__file__
    libs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(core))), "numpy.libs")
    _blas_pool.quiet.pools()
    pools = [p for p in _blas_pool.quiet._pools if os.path.dirname(p.path) == libs]
    assert pools, f"numpy uses OpenBLAS, but the guard found none in {libs}: {_blas_pool.quiet.pools()}"
    return pools[0]


def blas_threads(pool):
    """openblas_get_num_threads of that library, whatever its symbol suffix."""
    lib = pool.lib
    for name in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
                 "openblas_get_num_threads"):
        if hasattr(lib, name):
            return getattr(lib, name)()
    pytest.fail(f"no openblas_get_num_threads in {pool.path}")


def set_blas_threads(pool, n):
    for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
                 "openblas_set_num_threads"):
        if hasattr(pool.lib, name):
            return getattr(pool.lib, name)(n)
    pytest.fail(f"no openblas_set_num_threads in {pool.path}")


class Probe(nn.Module):
    """Identity that records numpy's OpenBLAS thread_timeout whenever fastnn runs it on more than one
    sample (fit's one-sample shape check is not worth the guard)."""

    def __init__(self, pool):
        super().__init__()
        self.pool, self.seen = pool, []

    def forward(self, x):
        if len(x) > 1:
            self.seen.append(self.pool.timeout.value)
        return x.copy()

    def backward(self, g):
        if len(g) > 1:
            self.seen.append(self.pool.timeout.value)
        return g.copy()


def small_task(n=64):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 12)).astype(np.float32), rng.integers(0, 3, n)


def numpy_product():
    a = np.ones((256, 256), np.float32)
    return a @ a  # large enough for OpenBLAS to use its workers


@needs_openblas
def test_quiet_lowers_each_timeout_and_restores_it():
    pool = numpy_pool()
    before = pool.timeout.value
    assert before != _blas_pool.QUIET_TICKS or os.environ.get("OPENBLAS_THREAD_TIMEOUT") == "4"
    with _blas_pool.quiet:
        assert pool.timeout.value == _blas_pool.QUIET_TICKS
        with _blas_pool.quiet:  # nested: the inner exit keeps it quiet
            pass
        assert pool.timeout.value == _blas_pool.QUIET_TICKS
    assert pool.timeout.value == before
    with pytest.raises(KeyboardInterrupt):
        with _blas_pool.quiet:
            raise KeyboardInterrupt
    assert pool.timeout.value == before


@needs_openblas
def test_threads_share_the_guard_until_the_last_leaves():
    pool = numpy_pool()
    before = pool.timeout.value
    inside, leave = threading.Event(), threading.Event()

    def other():
        with _blas_pool.quiet:
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(10)
    with _blas_pool.quiet:
        pass
    assert pool.timeout.value == _blas_pool.QUIET_TICKS  # the other thread is still inside
    leave.set()
    t.join()
    assert pool.timeout.value == before


@needs_openblas
def test_fastnn_entry_points_run_quiet():
    pool = numpy_pool()
    before = pool.timeout.value
    X, y = small_task()
    probe = Probe(pool)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), probe, nn.Linear(8, 3))
    runs = {
        "fit": lambda: fastnn.fit(model, X, y, epochs=1, batch_size=16, verbose=0, validation_data=(X, y)),
        "evaluate": lambda: fastnn.evaluate(model, X, y),
        "predict": lambda: fastnn.predict(model, X),
        "train_step": lambda: fastnn.train_step(model, X[:16], y[:16], nn.CrossEntropyLoss(),
                                                optim.SGD(model.parameters(), lr=0.1)),
        "model(x)": lambda: model(X),
        "model.backward": lambda: model.backward(np.ones((len(X), 3), np.float32)),
    }
    for name, run in runs.items():
        numpy_product()
        probe.seen.clear()
        run()
        assert probe.seen and set(probe.seen) == {_blas_pool.QUIET_TICKS}, name
        assert pool.timeout.value == before, name


@needs_openblas
@pytest.mark.parametrize("threads", [1, 2])
def test_the_users_thread_count_is_kept(threads):
    pool = numpy_pool()
    original = blas_threads(pool)
    X, y = small_task()
    a = np.ones((300, 300), np.float32)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    try:
        set_blas_threads(pool, threads)
        for run in (lambda: fastnn.fit(model, X, y, epochs=2, verbose=0), lambda: F.matmul(a, a),
                    lambda: fastnn.predict(model, X)):
            numpy_product()
            run()
            assert blas_threads(pool) == threads
            numpy_product()  # numpy still runs after fastnn (its workers wake from their sleep)
    finally:
        set_blas_threads(pool, original)


@needs_openblas
def test_the_users_threadpoolctl_limit_is_kept():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pool = numpy_pool()
    X, y = small_task()

    def counts():
        return {p["filepath"]: p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"}

    before = counts()
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        limited = counts()
        assert limited[pool.path] == 1
        fastnn.fit(nn.Sequential(nn.Linear(12, 3)), X, y, epochs=1, verbose=0)
        F.matmul(np.ones((200, 200), np.float32), np.ones((200, 200), np.float32))
        assert counts() == limited
    assert counts() == before


@needs_openblas
def test_without_threadpoolctl_in_a_child():
    """The core imports and the guard works with threadpoolctl missing (it never uses it)."""
    code = textwrap.dedent("""
        import sys
        sys.modules["threadpoolctl"] = None  # import threadpoolctl now fails
        import numpy as np
        import fastnn
        from fastnn import _blas_pool
        pools = _blas_pool.quiet._pools if _blas_pool.quiet.pools() else []
        before = [p.timeout.value for p in pools]
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((64, 12)).astype(np.float32), rng.integers(0, 3, 64)
        a = np.ones((256, 256), np.float32)
        a @ a
        fastnn.fit(fastnn.nn.Sequential(fastnn.nn.Linear(12, 3)), X, y, epochs=1, verbose=0)
        with _blas_pool.quiet:
            inside = [p.timeout.value for p in pools]
        print(len(pools), before == [p.timeout.value for p in pools], set(inside))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=child_env())
    assert r.returncode == 0, r.stderr[-3000:]
    count, restored, inside = r.stdout.split(maxsplit=2)
    assert int(count) >= 1 and restored == "True" and inside.strip() == f"{{{_blas_pool.QUIET_TICKS}}}"


@needs_openblas
def test_every_openblas_copy_is_quieted():
    """scipy's own OpenBLAS (a second copy, other symbol suffixes) is found as well."""
    pytest.importorskip("scipy.linalg")
    scipy_copies = [p for p in dict.fromkeys(m[4] for m in _blas_pool._maps())
                    if "openblas" in p.lower() and "scipy.libs" in p]
    if not scipy_copies:
        pytest.skip("this scipy does not bring its own OpenBLAS")
    paths = _blas_pool.quiet.pools()
    assert set(scipy_copies) <= set(paths)
    pools = [p for p in _blas_pool.quiet._pools]
    before = [p.timeout.value for p in pools]
    with _blas_pool.quiet:
        assert {p.timeout.value for p in pools} == {_blas_pool.QUIET_TICKS}
    assert [p.timeout.value for p in pools] == before


def test_a_process_without_openblas_is_left_alone(monkeypatch, tmp_path):
    """MKL, Accelerate, a non-ELF or stripped file named like OpenBLAS: nothing is found or written."""
    fake = tmp_path / "libopenblas.so.0"
    fake.write_bytes(b"not an ELF file")
    maps = [(0x1000, 0x2000, "r-xp", 0, "/opt/intel/lib/libmkl_rt.so.2"),
            (0x3000, 0x4000, "r--p", 0, str(fake)),
            (0x5000, 0x6000, "r--p", 0, shutil.which("true") or "/bin/true")]
    monkeypatch.setattr(_blas_pool, "_maps", lambda: maps)
    monkeypatch.setattr(_blas_pool, "_is_candidate", lambda path: True)  # examine every one of them
    guard = _blas_pool._Quiet()
    real = [(p, p.timeout.value) for p in _blas_pool.quiet._pools]
    with guard:
        assert guard.pools() == []
        assert [(p, p.timeout.value) for p in _blas_pool.quiet._pools] == real


@needs_openblas
def test_a_library_that_is_not_the_loaded_one_is_never_loaded_or_written(monkeypatch, tmp_path):
    pool = numpy_pool()
    copy = tmp_path / "libopenblas_copy.so"
    shutil.copyfile(pool.path, copy)  # the same symbols, but not loaded
    real = [m for m in _blas_pool._maps() if m[4] == pool.path]
    shifted = [(s + 0x10000, e + 0x10000, perm, off, path) for s, e, perm, off, path in real]  # a wrong base
    monkeypatch.setattr(_blas_pool, "_maps", lambda: [(s, e, perm, off, str(copy)) for s, e, perm, off, _ in real]
                        + shifted)
    assert _blas_pool._open_pool(str(copy), _blas_pool._maps()) is None
    monkeypatch.undo()
    assert all(m[4] != str(copy) for m in _blas_pool._maps())  # RTLD_NOLOAD: the copy was not mapped
    assert _blas_pool._open_pool(pool.path, shifted) is None  # the mapping does not match the symbols


def test_disabled_guard_writes_nothing(monkeypatch):
    monkeypatch.setattr(_blas_pool, "enabled", False)
    values = [p.timeout.value for p in _blas_pool.quiet._pools]
    with _blas_pool.quiet:
        assert [p.timeout.value for p in _blas_pool.quiet._pools] == values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_results_do_not_depend_on_the_guard(monkeypatch, dtype):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 20)).astype(dtype)
    y = rng.integers(0, 4, 200)
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(_blas_pool, "enabled", enabled)
        fastnn.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4))
        if dtype == np.float64:
            model.double()
        numpy_product()
        history = fastnn.fit(model, X, y, epochs=3, batch_size=32, verbose=0, seed=1)
        numpy_product()
        results.append((model.flat_parameters().copy(), history.history["loss"], fastnn.predict(model, X)))
    (p1, l1, o1), (p2, l2, o2) = results
    np.testing.assert_array_equal(p1, p2)
    assert l1 == l2
    np.testing.assert_array_equal(o1, o2)


def test_threaded_products_are_guarded_and_small_ones_skip_it():
    big, small = np.ones((128, 128), np.float32), np.ones((8, 8), np.float32)
    assert _guard(big, big) is _blas_pool.quiet  # 2M multiply-adds: threaded (gemm.h)
    assert _guard(small, small) is not _blas_pool.quiet
    assert _guard(np.ones((256, 64), np.float32), np.ones((128, 64), np.float32), 0) is _blas_pool.quiet  # linear
    for bad in ([[1.0]], None, np.float32(1)):
        assert _guard(bad, big) is not _blas_pool.quiet and _guard(big, bad) is not _blas_pool.quiet
    with pytest.raises(ValueError, match=r"\[matmul\]"):
        F.matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))  # errors are still the kernel's


def test_fastnns_own_openblas_is_left_alone():
    """scipy_openblas32, the copy fastnn calls single-threaded, is not touched."""
    scipy_openblas32 = pytest.importorskip("scipy_openblas32")
    path = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")
    if not os.path.exists(path):
        pytest.skip(f"{path} is missing")
    lib = ctypes.CDLL(path)  # loaded as fastnn's GEMM backend loads it
    assert any(m[4] == os.path.realpath(path) for m in _blas_pool._maps())
    _blas_pool.quiet._modules = -1  # look again: a ctypes load imports no module
    assert all("scipy_openblas32" not in p for p in _blas_pool.quiet.pools())
    # ... by choice: its thread_timeout is found as well, although this build (0.3.34) exports
    # none of OpenBLAS's internals, as numpy's next wheels may not
    pool = _blas_pool._open_pool(os.path.realpath(path), _blas_pool._maps())
    assert pool is not None and not pool.timeout.value & (pool.timeout.value - 1)
    del lib


def test_a_library_that_breaks_the_reader_does_not_break_fastnn(monkeypatch):
    def broken(path, maps):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(_blas_pool, "_open_pool", broken)
    monkeypatch.setattr(_blas_pool, "_maps", lambda: [(0x1000, 0x2000, "r-xp", 0, "/x/libopenblas.so.0")])
    guard = _blas_pool._Quiet()
    with guard:
        assert guard.pools() == []
    assert guard._depth == 0
