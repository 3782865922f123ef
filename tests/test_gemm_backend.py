"""The GEMM backend: OpenBLAS from scipy-openblas32 when installed, Eigen otherwise, chosen at
import (FASTNN_GEMM) or with use_gemm_backend; both give the reference's products."""

import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import assert_sum_close, matmul_terms
from tests.isolation import child_env

try:
    import scipy_openblas32  # noqa: F401

    HAVE_OPENBLAS = True
except ImportError:
    HAVE_OPENBLAS = False


def child(code, **env):
    e = child_env()
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)


@pytest.fixture
def restore_backend():
    before = fastnn.gemm_backend()["name"]
    yield
    fastnn.use_gemm_backend(before)


def test_backend_is_described():
    info = fastnn.gemm_backend()
    assert info["name"] in ("openblas", "eigen")
    assert info["core"] and info["config"]
    if info["name"] == "eigen":
        assert info["reason"]
    else:
        assert info["path"].endswith(".so") or ".so." in info["path"] or info["path"].endswith(".dylib")


@pytest.mark.skipif(not HAVE_OPENBLAS, reason="scipy-openblas32 is not installed")
def test_openblas_is_the_default_when_the_wheel_is_installed():
    out = child("import fastnn; print(fastnn.gemm_backend()['name'])", FASTNN_GEMM="")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "openblas"


def test_fastnn_gemm_eigen_is_honoured():
    out = child("import fastnn; g = fastnn.gemm_backend(); print(g['name'], '|', g['reason'])", FASTNN_GEMM="eigen")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "eigen | FASTNN_GEMM=eigen"


def test_unknown_fastnn_gemm_is_an_import_error():
    out = child("import fastnn", FASTNN_GEMM="mkl")
    assert out.returncode == 1
    assert "FASTNN_GEMM must be one of auto, openblas, eigen, got 'mkl'" in out.stderr


def test_missing_wheel_falls_back_to_eigen_or_fails_when_openblas_is_demanded():
    hide = "import sys; sys.modules['scipy_openblas32'] = None\n"
    out = child(hide + "import fastnn; g = fastnn.gemm_backend(); print(g['name'], '|', g['reason'])", FASTNN_GEMM="")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "eigen | the scipy-openblas32 package is not installed"
    out = child(hide + "import fastnn", FASTNN_GEMM="openblas")
    assert out.returncode == 1
    assert "FASTNN_GEMM=openblas, but OpenBLAS could not be loaded" in out.stderr


@pytest.mark.skipif(not HAVE_OPENBLAS, reason="scipy-openblas32 is not installed")
def test_loading_leaves_the_users_openblas_thread_setting_alone():
    code = "import os, fastnn; print(os.environ.get('OPENBLAS_NUM_THREADS'))"
    assert child(code, OPENBLAS_NUM_THREADS="3").stdout.strip() == "3"
    e = child_env()
    e.pop("OPENBLAS_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "None"


def test_a_bad_library_path_is_reported_not_fatal():
    out = child(
        "from fastnn._config import _C; import fastnn\n"
        "print(_C._load_blas('/nonexistent/libscipy_openblas.so') != '')\n"
        "print(fastnn.gemm_backend()['name'] in ('openblas', 'eigen'))",
        FASTNN_GEMM="eigen",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_use_gemm_backend_validates(restore_backend):
    with pytest.raises(ValueError, match="name must be 'openblas' or 'eigen', got 'blis'"):
        fastnn.use_gemm_backend("blis")
    with pytest.raises(TypeError, match="use_gemm_backend: name must be a str"):
        fastnn.use_gemm_backend(1)
    fastnn.use_gemm_backend("eigen")
    assert fastnn.gemm_backend()["name"] == "eigen"


@pytest.mark.skipif(not HAVE_OPENBLAS, reason="scipy-openblas32 is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_backends_agree_with_the_reference(restore_backend, dtype):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((300, 257)).astype(dtype), rng.standard_normal((257, 190)).astype(dtype)
    want = R.matmul(a, b)
    for name in ("eigen", "openblas"):
        fastnn.use_gemm_backend(name)
        assert_sum_close(F.matmul(a, b), want, matmul_terms(a, b), a.shape[1], dtype)
        assert_sum_close(F.matmul(b.T, a.T), want.T, matmul_terms(b.T, a.T), a.shape[1], dtype)


@pytest.mark.skipif(not HAVE_OPENBLAS, reason="scipy-openblas32 is not installed")
def test_a_raised_thread_count_of_our_openblas_is_put_back_to_one(restore_backend):
    """threadpoolctl reaches every OpenBLAS in the process: a pool under each fastnn thread would
    oversubscribe the cores, so each product first puts the library back to one thread."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fastnn.use_gemm_backend("openblas")
    path = fastnn.gemm_backend()["path"]
    a = np.ones((256, 256), np.float32)  # wider than the narrow kernel's N (64 on AVX-512): OpenBLAS's product
    with threadpoolctl.threadpool_limits(limits=3):
        ours = [p for p in threadpoolctl.threadpool_info() if p.get("filepath") == path]
        if not ours or ours[0]["num_threads"] == 1:
            pytest.skip("threadpoolctl did not reach fastnn's OpenBLAS")
        assert fastnn._config._C._gemm_backend()["threads"] == 3
        F.matmul(a, a)
        assert fastnn._config._C._gemm_backend()["threads"] == 1
