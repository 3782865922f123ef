"""gemm's narrow kernel (kernels/gemm_narrow.h): products of few columns (8 <= N <= 4 SIMD packets,
8 with AVX2's 32-byte packets, in panels of 4) with a row-major A, through fastnn.functional.matmul, against the NumPy reference. Every limit is
read from the build (_C._narrow_gemm_limits, _C._narrow_gemm_fits), never hard-coded: the packet
size is 4 floats with SSE2, 8 with AVX2, 16 with AVX-512. Shapes on each side of each limit, strided
A and C, accumulate, and the same bits for 1, 2 and 3 threads."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from fastnn._config import _C
from tests.conftest import DTYPES, assert_sum_close, matmul_terms, num_threads, random_array

pytestmark = pytest.mark.skipif(not hasattr(_C, "_narrow_gemm_limits"), reason="no narrow GEMM kernel in this build")


def limits(dtype):
    return _C._narrow_gemm_limits()[np.dtype(dtype).name]


def fits(m, k, n, dtype):
    return _C._narrow_gemm_fits(m, k, n, np.dtype(dtype).name)


def packed_bytes(k, n, dtype):
    p = limits(dtype)["packet"]
    return k * -(-n // p) * p * np.dtype(dtype).itemsize


def panel(dtype):
    """Columns of one panel of the packed B: 4 packets (narrow_detail::kPanelColumns)."""
    return 4 * limits(dtype)["packet"]


def deep_only(dtype, n):
    """Whether width n is taken only from depth deep_min_k (float32 N 33-47 with AVX2)."""
    lim = limits(dtype)
    return lim["deep_n_from"] <= n <= lim["deep_n_to"]


def depth(dtype, n, k):
    """k, raised to deep_min_k where width n needs it to run the narrow kernel."""
    return max(k, limits(dtype)["deep_min_k"]) if deep_only(dtype, n) else k


def widths(dtype):
    """N at the lower limit, one below the upper limit, at it and one past it (falls back)."""
    lim = limits(dtype)
    return sorted({lim["min_n"], lim["max_n"] - 1, lim["max_n"], lim["max_n"] + 1})


def inside(dtype, n):
    """n moved into the narrow widths (SSE2's float64 has only N = 8)."""
    lim = limits(dtype)
    return min(max(n, lim["min_n"]), lim["max_n"])


def check(c, a, b, out0=None):
    """c == a @ b (+ out0) within the bound of its summed terms."""
    expected, terms, k = R.matmul(a, b), matmul_terms(a, b), a.shape[1]
    if out0 is not None:
        expected, terms, k = expected + out0, terms + np.abs(out0), k + 1
    assert_sum_close(c, expected, terms, k)


def bits(x):
    x = np.ascontiguousarray(x)
    return x.view({4: np.uint32, 8: np.uint64}[x.dtype.itemsize])


def test_limits_come_from_the_packet_size():
    for dtype in DTYPES:
        lim = limits(dtype)
        packet_bytes = lim["packet"] * np.dtype(dtype).itemsize
        assert packet_bytes in (16, 32, 64)
        assert lim["max_n"] == (8 if packet_bytes == 32 else 4) * lim["packet"]  # widened where measured (AVX2)
        assert lim["min_n"] <= lim["max_n"] and lim["min_k"] >= 1 and lim["min_m"] >= 1 and lim["max_packed_bytes"] > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_fits_at_and_just_outside_each_limit(dtype):
    lim = limits(dtype)
    m, k, n = lim["min_m"], lim["min_k"], lim["min_n"]
    assert fits(m, k, n, dtype) and fits(m, k, lim["max_n"], dtype)
    assert not fits(m - 1, k, n, dtype)
    assert not fits(m, k - 1, n, dtype)
    assert not fits(m, k, n - 1, dtype)
    assert not fits(m, k, lim["max_n"] + 1, dtype)
    k_max = lim["max_packed_bytes"] // packed_bytes(1, lim["max_n"], dtype)  # deepest B that fits packed
    assert fits(m, k_max, lim["max_n"], dtype) and not fits(m, k_max + 1, lim["max_n"], dtype)
    with pytest.raises(TypeError, match="dtype"):
        _C._narrow_gemm_fits(16, 32, 8, "int32")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [16, 17, 1000])
@pytest.mark.parametrize("k", [32, 33, 1000])
def test_matmul_at_the_width_limits(rng, dtype, m, k):
    for n in widths(dtype):
        a, b = random_array(rng, (m, k), dtype), random_array(rng, (k, n), dtype)
        check(F.matmul(a, b), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes_just_outside_each_limit_are_right_too(rng, dtype):
    lim = limits(dtype)
    m, k, n = lim["min_m"], lim["min_k"], lim["max_n"]
    k_max = lim["max_packed_bytes"] // packed_bytes(1, n, dtype)
    for shape in [(m - 1, k, n), (m, k - 1, n), (m, k, lim["min_n"] - 1), (m, k, n + 1), (m, k_max + 1, n),
                  (m, k_max, n), (1, 300, n), (7, 31, 9), (25088 // 49, 9, 32)]:  # batch-like and im2col-like
        a, b = random_array(rng, shape[:2], dtype), random_array(rng, shape[1:], dtype)
        check(F.matmul(a, b), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_bits_as_the_narrow_linear_kernel(rng, dtype):
    """matmul(x, W^T) of a narrow shape runs the kernel Linear runs on its rows (no bias, no
    activation): the same bits, which a BLAS tile would not give."""
    lim, widest = limits(dtype), panel(dtype)  # the Linear kernels' widest: one panel
    for m, k, n in [(100, 288, widest), (lim["min_m"], lim["min_k"], lim["min_n"]), (257, 75, inside(dtype, widest - 3))]:
        assert fits(m, k, n, dtype)
        x, w = random_array(rng, (m, k), dtype), random_array(rng, (n, k), dtype)
        np.testing.assert_array_equal(bits(F.matmul(x, w.T)), bits(F.linear_forward(x, w)))


def panel_widths(dtype):
    """Widths past one panel of B (builds whose max_n spans several: AVX2), around each panel edge."""
    lim, p = limits(dtype), panel(dtype)
    q = lim["packet"]
    return sorted({n for n in (p + 1, p + q - 1, p + q + 1, 2 * p - q - 1, 2 * p - 1, 2 * p) if p < n <= lim["max_n"]})


@pytest.mark.skipif(not hasattr(_C, "_gemm_tuning"), reason="no _C._gemm_tuning in this build")
@pytest.mark.parametrize("dtype", DTYPES)
def test_widths_past_a_panel_that_need_depth(rng, dtype):
    """float32 N 33-47 (AVX2) runs the narrow kernel from K = deep_min_k only; below, the BLAS tiles
    (the same bits with the narrow kernel switched off)."""
    lim = limits(dtype)
    if lim["deep_n_from"] > lim["deep_n_to"]:
        pytest.skip("no depth rule in this build")
    assert lim["deep_n_from"] == panel(dtype) + 1 and lim["deep_n_to"] < lim["max_n"]
    k = lim["deep_min_k"]
    for n in (lim["deep_n_from"], lim["deep_n_to"]):
        assert fits(100, k, n, dtype) and not fits(100, k - 1, n, dtype)
    assert fits(100, lim["min_k"], lim["deep_n_to"] + 1, dtype) and fits(100, lim["min_k"], panel(dtype), dtype)
    before = _C._gemm_tuning()
    try:
        a = random_array(rng, (100, k - 1), dtype)
        b = random_array(rng, (k - 1, lim["deep_n_from"]), dtype)
        on = F.matmul(a, b)
        _C._gemm_tuning(narrow=False)
        np.testing.assert_array_equal(bits(on), bits(F.matmul(a, b)))
    finally:
        _C._gemm_tuning(**before)
    check(on, a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [16, 17, 1000])
@pytest.mark.parametrize("k", [32, 47, 784])
def test_matmul_across_panels(rng, dtype, m, k):
    """N = 33, 39, 41, 47, 63, 64 (float32 with AVX2): the product runs panel after panel of B;
    plain, B given transposed (x·Wᵀ), and accumulated."""
    if not panel_widths(dtype):
        pytest.skip("max_n is one panel in this build")
    for n in panel_widths(dtype):
        assert fits(m, k, n, dtype) == (not deep_only(dtype, n) or k >= limits(dtype)["deep_min_k"])
        a, b = random_array(rng, (m, k), dtype), random_array(rng, (k, n), dtype)
        check(F.matmul(a, b), a, b)
        check(F.matmul(a, np.ascontiguousarray(b.T).T), a, b)
        c0 = random_array(rng, (m, n), dtype)
        c = c0.copy()
        F.matmul(a, b, out=c, accumulate=True)
        check(c, a, b, out0=c0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_a_and_c_accumulate(rng, dtype):
    lim = limits(dtype)
    for n in sorted({inside(dtype, lim["max_n"] - 1), inside(dtype, panel(dtype) + 1)}):
        strided_a_and_c_accumulate(rng, dtype, 61, depth(dtype, n, 40), n)


def strided_a_and_c_accumulate(rng, dtype, m, k, n):
    a0, b = random_array(rng, (m, k), dtype), random_array(rng, (k, n), dtype)
    big = np.zeros((m, k + 5), dtype)
    big[:, 3 : k + 3] = a0
    rows = np.zeros((2 * m, k), dtype)
    rows[::2] = a0
    for a in (big[:, 3 : k + 3], rows[::2], np.asfortranarray(a0)):  # padded rows, a row step, a transposed view
        assert fits(m, k, n, dtype)
        cbuf = np.full((m, n + 7), -3.5, dtype)
        c = cbuf[:, 2 : n + 2]  # a column slice: rows of unit stride, n + 7 apart
        assert F.matmul(a, b, out=c) is c
        check(c, a0, b)
        c0 = random_array(rng, (m, n), dtype)
        c[...] = c0
        F.matmul(a, b, out=c, accumulate=True)
        check(c, a0, b, out0=c0)
        assert (cbuf[:, :2] == -3.5).all() and (cbuf[:, n + 2 :] == -3.5).all(), "wrote outside out"


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_bits_for_one_two_three_threads(rng, dtype):
    lim = limits(dtype)
    for m, k, n in [(1000, 288, lim["max_n"]), (3001, 64, lim["min_n"]), (777, 100, inside(dtype, lim["max_n"] - 1)),
                    (1000, 784, inside(dtype, panel(dtype) + lim["packet"] - 1))]:
        assert fits(m, k, n, dtype)
        a, b = random_array(rng, (m, k), dtype), random_array(rng, (k, n), dtype)
        c0 = random_array(rng, (m, n), dtype)
        results = []
        for t in (1, 2, 3):
            with num_threads(t):
                c = c0.copy()
                F.matmul(a, b, out=c, accumulate=True)
                results.append((F.matmul(a, b), c))
        check(results[0][0], a, b)
        check(results[0][1], a, b, out0=c0)
        for plain, acc in results[1:]:
            np.testing.assert_array_equal(bits(plain), bits(results[0][0]))
            np.testing.assert_array_equal(bits(acc), bits(results[0][1]))


def test_out_views_that_are_not_rows_are_refused():
    a, b = np.ones((16, 32), np.float32), np.ones((32, 8), np.float32)
    with pytest.raises(ValueError, match="C-contiguous or rows of unit stride"):
        F.matmul(a, b, out=np.empty((16, 16), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="C-contiguous or rows of unit stride"):
        F.matmul(a, b, out=np.empty((8, 16), np.float32).T)


@pytest.mark.skipif(not hasattr(_C, "_gemm_tuning"), reason="no _C._gemm_tuning in this build")
@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes_outside_the_limits_and_transposed_a_go_the_old_way(rng, dtype):
    """The same bits with the narrow kernel switched off (_C._gemm_tuning): the product never
    reached it. A transposed view of A has no contiguous rows, so it is not taken either."""
    lim = limits(dtype)
    m, k, n = lim["min_m"], lim["min_k"], lim["max_n"]
    k_max = lim["max_packed_bytes"] // packed_bytes(1, n, dtype)
    a0 = random_array(rng, (40, 50), dtype)
    cases = [(random_array(rng, (m - 1, k), dtype), n), (random_array(rng, (m, k - 1), dtype), n),
             (random_array(rng, (m, k), dtype), lim["min_n"] - 1), (random_array(rng, (m, k), dtype), n + 1),
             (random_array(rng, (m, k_max + 1), dtype), n), (np.asfortranarray(a0), n)]
    before = _C._gemm_tuning()
    try:
        for a, width in cases:
            b = random_array(rng, (a.shape[1], width), dtype)
            on = F.matmul(a, b)
            _C._gemm_tuning(narrow=False)
            off = F.matmul(a, b)
            _C._gemm_tuning(narrow=True)
            np.testing.assert_array_equal(bits(on), bits(off), err_msg=f"{a.shape} x {b.shape}")
            check(on, a, b)
    finally:
        _C._gemm_tuning(**before)
