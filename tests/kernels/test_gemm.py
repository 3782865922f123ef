"""matmul and bmm under every GEMM backend the build has: C++ vs reference for each transpose
variant, odd sizes, strided views, out= and accumulate=; the same bits for any thread count (also
through nn.Linear); bad input.

Written against the public entry points only (fastnn.functional, nn.Linear, set_num_threads), so
the tests hold whichever backend (OpenBLAS blocks or Eigen's kernel) computes the products."""

import inspect
import os

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import nn
from fastnn import reference as R
from fastnn._config import _C
from tests.conftest import DTYPES, ODD_SIZES, assert_sum_close, matmul_terms, num_threads, random_array
from tests.reference.test_linear import act_rtol, backward_terms, forward_terms

# Around SIMD widths and register tiles, plus one size past every cache block of a 2-core CPU.
GEMM_SIZES = ODD_SIZES + [1000]

# "T": the operand is a transposed view of a C-order array (read in place, no copy).
VARIANTS = ["NN", "TN", "NT", "TT"]  # A·B, Aᵀ·B, A·Bᵀ, Aᵀ·Bᵀ

THREAD_COUNTS = (1, 2, 3)  # 3 > cores: uneven splits, and a count no block size divides

GUARD = 5  # elements of canary around an out= window (odd, so the window is not 64-byte aligned)


@pytest.fixture(scope="module", autouse=True)
def numpy_blas_on_one_thread():
    """The references run numpy's OpenBLAS, whose workers spin after each product and take the
    cores from the fastnn call that follows (the module ran 1.7x longer); one thread has none.
    Only numpy's own copy is limited (threadpoolctl, when installed), never the BLAS fastnn loads."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        yield
        return
    controller = ThreadpoolController()
    numpy_libs = [lib.filepath for lib in controller.lib_controllers
                  if lib.user_api == "blas" and os.sep + "numpy" in lib.filepath]
    with controller.select(filepath=numpy_libs).limit(limits=1):
        yield


# --- backends ----------------------------------------------------------------------------------


def backend_in_use():
    return _C._gemm_backend()["name"] if hasattr(_C, "_gemm_backend") else "eigen"


@pytest.fixture(scope="module", autouse=True, params=["eigen", "openblas"])
def gemm_backend(request):
    """Runs every test of this module under each GEMM backend the build can use, then restores the
    backend that was in use. Without _C._use_gemm_backend, only the build's one backend runs."""
    name, before = request.param, backend_in_use()
    use = getattr(_C, "_use_gemm_backend", None)
    if use is None:
        if name != before:
            pytest.skip(f"no _C._use_gemm_backend: this build runs {before!r} only")
        yield name
        return
    try:
        use(name)
    except Exception as e:  # the wheel (scipy-openblas32) is missing, or the build has no such backend
        use(before)
        pytest.skip(f"GEMM backend {name!r} unavailable: {type(e).__name__}: {e}")
    try:
        yield name
    finally:
        use(before)


def test_backend_reports_itself(gemm_backend):
    if not hasattr(_C, "_gemm_backend"):
        pytest.skip("no _C._gemm_backend in this build")
    info = _C._gemm_backend()
    assert info["name"] == gemm_backend
    assert all(isinstance(info[k], str) for k in ("name", "core", "config", "path", "loaded")), info
    assert info["threads"] == 1, info  # fastnn runs its OpenBLAS single-threaded


def test_unknown_backend_is_refused_and_changes_nothing(gemm_backend):
    if not hasattr(_C, "_use_gemm_backend"):
        pytest.skip("no _C._use_gemm_backend in this build")
    with pytest.raises(ValueError, match="nope"):
        _C._use_gemm_backend("nope")
    assert backend_in_use() == gemm_backend


# --- operands ----------------------------------------------------------------------------------


def as_variant(a, b, variant):
    """The same values, with each operand marked "T" stored transposed (a view of a C-order copy)."""
    t = lambda x: np.ascontiguousarray(x.T).T  # noqa: E731
    return (t(a) if variant[0] == "T" else a), (t(b) if variant[1] == "T" else b)


def operands(rng, m, k, n, dtype, variant="NN"):
    a, b = as_variant(random_array(rng, (m, k), dtype), random_array(rng, (k, n), dtype), variant)
    if "T" in variant:  # the view is what is tested: make sure no copy slipped in
        assert (variant[0] != "T" or a.flags.f_contiguous) and (variant[1] != "T" or b.flags.f_contiguous)
    return a, b


def check_product(c, a, b, err_msg=""):
    assert_sum_close(c, R.matmul(a, b), matmul_terms(a, b), a.shape[1], err_msg=err_msg)


def window(shape, dtype, fill=np.nan):
    """A C-contiguous out= array inside a buffer with GUARD canary elements on either side;
    returns (out, check) where check() asserts the canaries are untouched."""
    size = int(np.prod(shape))
    buf = np.full(size + 2 * GUARD, -7.25, dtype)
    out = buf[GUARD : GUARD + size].reshape(shape)
    out[...] = fill

    def check():
        assert (buf[:GUARD] == -7.25).all() and (buf[GUARD + size :] == -7.25).all(), "wrote outside out"

    return out, check


def bits(x):
    """The raw bytes of x as unsigned integers: -0.0 differs from 0.0 and NaN equals itself."""
    x = np.ascontiguousarray(x)
    return x.view({4: np.uint32, 8: np.uint64}[x.dtype.itemsize])


def assert_same_bits(results, err_msg=""):
    first = results[0]
    for threads, r in zip(THREAD_COUNTS[1:], results[1:]):
        assert r.shape == first.shape and r.dtype == first.dtype
        differ = bits(r) != bits(first)
        assert not differ.any(), f"{int(differ.sum())} of {r.size} elements differ, {threads} threads vs 1 {err_msg}"


def for_each_thread_count(fn):
    out = []
    for t in THREAD_COUNTS:
        with num_threads(t):
            out.append(fn())
    return out


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dim", "MKN")
@pytest.mark.parametrize("size", GEMM_SIZES)
def test_matmul_odd_size_in_each_dimension(rng, dtype, variant, dim, size):
    m, k, n = (size if d == dim else 65 for d in "MKN")
    a, b = operands(rng, m, k, n, dtype, variant)
    check_product(F.matmul(a, b), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "m,k,n",
    [(1, 1, 1), (1, 1, 1000), (1000, 1, 1), (1000, 1, 129), (7, 1, 33)]  # K = 1: outer products
    + [(1, 1000, 1), (1, 1000, 1000), (1000, 1000, 1), (7, 1000, 1000)]  # vectors, small M
    + [(33, 31, 32), (129, 1000, 129), (1000, 129, 7), (1000, 33, 1000), (256, 300, 129)],
)
def test_matmul_shapes(rng, dtype, variant, m, k, n):
    a, b = operands(rng, m, k, n, dtype, variant)
    check_product(F.matmul(a, b), a, b)


def strided(x, how):
    """x's values laid out as `how`: views with row strides wider than the row, steps, offsets,
    negative strides (the last two kinds are copied by fastnn, the others read in place)."""
    r, c = x.shape
    if how == "C":
        return x
    if how == "F":
        return np.asfortranarray(x)
    if how == "padded-rows":  # row stride > row length: a column slice of a wider array
        big = np.zeros((r, c + 3), x.dtype)
        big[:, 1 : c + 1] = x  # and an unaligned start
        return big[:, 1 : c + 1]
    if how == "row-step":  # every third row
        big = np.zeros((3 * r, c), x.dtype)
        big[::3] = x
        return big[::3]
    if how == "padded-T":  # transposed view of a padded array: column stride > column length
        big = np.zeros((c, r + 5), x.dtype)
        big[:, 2 : r + 2] = x.T
        return big[:, 2 : r + 2].T
    if how == "steps":  # steps in both dimensions: no unit stride at all
        big = np.zeros((2 * r, 3 * c), x.dtype)
        big[::2, ::3] = x
        return big[::2, ::3]
    if how == "reversed":  # negative strides
        return x[::-1, ::-1].copy()[::-1, ::-1]
    raise ValueError(how)


LAYOUTS = ["C", "F", "padded-rows", "row-step", "padded-T", "steps", "reversed"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "a_layout,b_layout",
    [(lay, "C") for lay in LAYOUTS] + [("C", lay) for lay in LAYOUTS[1:]]
    + [("F", "F"), ("padded-T", "padded-rows"), ("row-step", "padded-T"), ("steps", "reversed"), ("padded-rows", "steps")],
)
def test_matmul_strided_inputs(rng, dtype, a_layout, b_layout):
    m, k, n = 257, 300, 129  # threads split it, and K crosses a cache block
    a0, b0 = random_array(rng, (m, k), dtype), random_array(rng, (k, n), dtype)
    a, b = strided(a0, a_layout), strided(b0, b_layout)
    assert np.array_equal(a, a0) and np.array_equal(b, b0)
    c = F.matmul(a, b)
    check_product(c, a0, b0)
    assert np.array_equal(a, a0) and np.array_equal(b, b0), "an input was written"


def test_matmul_operands_may_share_memory(rng):
    x = random_array(rng, (300, 129), np.float32)
    check_product(F.matmul(x.T, x), x.T, x)  # a Gram matrix: both operands are one array
    check_product(F.matmul(x[:, :100].T, x[:, 29:]), x[:, :100].T, x[:, 29:])  # overlapping views


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 33, 1000), (1000, 1, 31), (257, 129, 300)])
def test_matmul_out(rng, dtype, variant, m, k, n):
    a, b = operands(rng, m, k, n, dtype, variant)
    out, untouched = window((m, n), dtype)  # NaN: every element must be written, not added to
    assert F.matmul(a, b, out=out) is out
    check_product(out, a, b)
    untouched()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_near_cancelling_elements_pass(rng, dtype, variant):
    """c = x y + x (e - y) = x e (up to rounding of e - y): every element is ~1e-4 of its terms, so
    its rounding error is far above a few ulps of itself. The bound on the terms still holds, and
    still catches a lost or doubled term (one term is ~1/k of the terms: 26 times the float32 bound)."""
    m, h, n = 65, 500, 33
    x, y = random_array(rng, (m, h), dtype), random_array(rng, (h, n), dtype)
    e = random_array(rng, (h, n), dtype, -1e-3, 1e-3)
    a, b = as_variant(np.hstack([x, x]), np.vstack([y, e - y]), variant)
    c = F.matmul(a, b, out=np.empty((m, n), dtype))
    expected, terms = R.matmul(a, b), matmul_terms(a, b)
    assert (np.abs(expected) < 1e-3 * terms).all(), "the case does not cancel"
    assert_sum_close(c, expected, terms, 2 * h)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3, 64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 33, 31), (32, 32, 32), (33, 1, 129)])
def test_bmm_matches_reference(rng, dtype, batch, m, k, n):
    a, b = random_array(rng, (batch, m, k), dtype), random_array(rng, (batch, k, n), dtype)
    assert_sum_close(F.bmm(a, b), R.bmm(a, b), matmul_terms(a, b), k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_bmm_transposed_items_and_out(rng, dtype, variant):
    batch, m, k, n = 5, 33, 129, 7
    a, b = random_array(rng, (batch, m, k), dtype), random_array(rng, (batch, k, n), dtype)
    t = lambda x: np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)  # noqa: E731
    a, b = (t(a) if variant[0] == "T" else a), (t(b) if variant[1] == "T" else b)
    out, untouched = window((batch, m, n), dtype)
    assert F.bmm(a, b, out=out) is out
    assert_sum_close(out, R.bmm(a, b), matmul_terms(a, b), k)
    untouched()


def test_bmm_strided_batch(rng):
    a = random_array(rng, (8, 5, 6), np.float64)[::2]
    b = random_array(rng, (4, 6, 3), np.float64)
    assert_sum_close(F.bmm(a, b), a @ b, matmul_terms(a, b), 6)


# --- accumulate-into ---------------------------------------------------------------------------

HAVE_ACCUMULATE = "accumulate" in (_C.matmul.__doc__ or "") and "accumulate" in inspect.signature(F.matmul).parameters
requires_accumulate = pytest.mark.skipif(not HAVE_ACCUMULATE, reason="_C.matmul has no accumulate argument yet")


@requires_accumulate
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 1, 33), (33, 1000, 7), (257, 129, 300), (1000, 31, 129)])
def test_matmul_accumulate(rng, dtype, variant, m, k, n):
    a, b = operands(rng, m, k, n, dtype, variant)
    out, untouched = window((m, n), dtype, fill=0)
    c0 = random_array(rng, (m, n), dtype)
    out[...] = c0
    ab, terms = R.matmul(a, b), matmul_terms(a, b)
    for step in (1, 2):  # c0 + step a b: step sums of k terms, plus c0
        assert F.matmul(a, b, out=out, accumulate=True) is out
        assert_sum_close(out, c0 + step * ab, np.abs(c0) + step * terms, step * k + 1, err_msg=f"step {step}")
    untouched()


@requires_accumulate
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_accumulate_cancelling(rng, dtype):
    a, b = operands(rng, 129, 1000, 65, dtype, "TN")
    c0 = -(a.astype(np.float64) @ b.astype(np.float64)).astype(dtype)  # c0 + a b is rounding only
    out = c0.copy()
    F.matmul(a, b, out=out, accumulate=True)
    assert_sum_close(out, np.zeros_like(out), np.abs(c0) + matmul_terms(a, b), 1000 + 1)


@requires_accumulate
def test_matmul_accumulate_false_overwrites(rng):
    a, b = operands(rng, 33, 129, 65, np.float32)
    out = np.full((33, 65), np.nan, np.float32)
    F.matmul(a, b, out=out, accumulate=False)
    check_product(out, a, b)


@requires_accumulate
def test_matmul_accumulate_needs_out():
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[matmul\].*accumulate"):
        F.matmul(a, b, accumulate=True)


@requires_accumulate
@pytest.mark.parametrize("m,k,n,variant", [(6272, 288, 64, "NN"), (64, 6272, 288, "TN"), (7, 1000, 1000, "NT")])
def test_matmul_accumulate_same_bits_for_any_thread_count(rng, m, k, n, variant):
    a, b = operands(rng, m, k, n, np.float32, variant)
    c0 = random_array(rng, (m, n), np.float32)

    def run():
        out = c0.copy()
        return F.matmul(a, b, out=out, accumulate=True)

    results = for_each_thread_count(run)
    assert_same_bits(results)
    assert_sum_close(results[0], c0 + R.matmul(a, b), np.abs(c0) + matmul_terms(a, b), k + 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,n_in,n_out", [(33, 129, 7), (128, 784, 512), (1, 1000, 31), (300, 9, 32)])
def test_linear_module_accumulates_gradients(rng, dtype, n, n_in, n_out):
    """nn.Linear's backward adds g^T x to weight.grad (a GEMM accumulating into its output) and
    sum(g) to bias.grad, over calls and onto what is there."""
    lin = nn.Linear(n_in, n_out, dtype=dtype)
    w = np.array(lin.weight.data)
    gw0, gb0 = random_array(rng, (n_out, n_in), dtype), random_array(rng, (n_out,), dtype)
    lin.weight.grad[...] = gw0
    lin.bias.grad[...] = gb0
    want_w, terms_w = gw0.astype(np.float64), np.abs(gw0.astype(np.float64))
    want_b, terms_b = gb0.astype(np.float64), np.abs(gb0.astype(np.float64))
    for step in (1, 2):
        x, g = random_array(rng, (n, n_in), dtype), random_array(rng, (n, n_out), dtype)
        lin(x)
        gx = lin.backward(g)
        check_product(gx, g, w, err_msg="grad_input")  # returned, not accumulated
        want_w, terms_w = want_w + R.matmul(g.T, x), terms_w + matmul_terms(g.T, x)
        want_b, terms_b = want_b + g.sum(0), terms_b + np.abs(g).sum(0)
        assert_sum_close(lin.weight.grad, want_w.astype(dtype), terms_w, step * n + 1, err_msg=f"weight step {step}")
        assert_sum_close(lin.bias.grad, want_b.astype(dtype), terms_b, step * n + 1, err_msg=f"bias step {step}")


# --- the same bits for any thread count --------------------------------------------------------


@pytest.mark.parametrize(
    "m,k,n,variant,dtype",
    [
        (1024, 1024, 1024, "NN", np.float32),
        (25088, 9, 32, "NN", np.float32),  # im2col of the first 3x3 conv (1 -> 32 channels), batch 32
        (6272, 288, 64, "NN", np.float32),  # im2col of a 3x3 conv, 32 -> 64 channels
        (64, 6272, 288, "TN", np.float32),  # its weight gradient g^T cols
        (6272, 64, 288, "NT", np.float32),  # its input gradient g W
        (1, 1024, 1024, "NN", np.float32),  # batch of one
        (7, 1000, 1000, "NT", np.float32),  # small M, a Linear's forward
        (129, 700, 257, "TT", np.float64),
        (512, 1000, 300, "NN", np.float64),
    ],
)
def test_matmul_same_bits_for_any_thread_count(rng, m, k, n, variant, dtype):
    """Threads split C into blocks chosen from the shape alone, never a sum over K."""
    a, b = operands(rng, m, k, n, dtype, variant)
    results = for_each_thread_count(lambda: F.matmul(a, b))
    assert_same_bits(results)
    check_product(results[0], a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,m,k,n", [(64, 128, 128, 128), (3, 300, 200, 257), (1, 1000, 64, 500)])
def test_bmm_same_bits_for_any_thread_count(rng, dtype, batch, m, k, n):
    a, b = random_array(rng, (batch, m, k), dtype), random_array(rng, (batch, k, n), dtype)
    results = for_each_thread_count(lambda: F.bmm(a, b))
    assert_same_bits(results)
    assert_sum_close(results[0], R.bmm(a, b), matmul_terms(a, b), k)


@pytest.mark.parametrize(
    "activation,n,n_in,n_out",
    [("relu", 128, 784, 512), ("none", 1, 1024, 1024), ("relu", 6272, 288, 64), ("tanh", 7, 1000, 1000),
     ("tanh", 128, 256, 10)],
)
def test_linear_module_same_bits_for_any_thread_count(rng, activation, n, n_in, n_out):
    """nn.Linear fuses bias and activation into the pass after its GEMM blocks; forward and the
    three gradients keep the same bits for any thread count too."""
    x = random_array(rng, (n, n_in), np.float32)
    g = random_array(rng, (n, n_out), np.float32)

    def run():
        lin = nn.Linear(n_in, n_out, activation=activation, generator=0)
        y = lin(x)
        return y, lin.backward(g), np.array(lin.weight.grad), np.array(lin.bias.grad), lin

    runs = for_each_thread_count(run)
    for i, name in enumerate(["y", "grad_input", "grad_weight", "grad_bias"]):
        assert_same_bits([r[i] for r in runs], err_msg=name)
    y, gx, gw, gb, lin = runs[0]
    w, b = np.array(lin.weight.data), np.array(lin.bias.data)
    assert_sum_close(y, R.linear_forward(x, w, b, activation), *forward_terms(x, w, b), rtol=act_rtol(activation, np.float32))
    terms, ks = backward_terms(g, x, w, y, activation)
    for name, got, want, t, k in zip(["grad_input", "grad_weight", "grad_bias"], (gx, gw, gb),
                                     R.linear_backward(g, x, w, y, activation), terms, ks):
        assert_sum_close(got, want, t, k, err_msg=name)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a,b,exc,match",
    [
        (np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), ValueError, r"\[matmul\] inner dimensions differ"),
        (np.ones((2, 3), np.float32), np.ones((3, 2), np.float64), TypeError, r"\[matmul\] b must be float32"),
        (np.ones((2, 3), np.int64), np.ones((3, 2), np.int64), TypeError, r"\[matmul\] a must be float32 or float64, got int64"),
        (np.ones(3, np.float32), np.ones((3, 2), np.float32), ValueError, r"\[matmul\] a must be 2-D, got shape \(3,\)"),
        (np.ones((0, 3), np.float32), np.ones((3, 2), np.float32), ValueError, r"\[matmul\] a is empty"),
        ([[1.0]], np.ones((1, 1)), TypeError, r"\[matmul\] a must be a numpy.ndarray, got list"),
        (np.ones((2, 3, 4), np.float32), np.ones((2, 5, 4), np.float32), ValueError, r"\[matmul\] a must be 2-D"),
        (np.ones((3, 2), np.float32).T, np.ones((2, 2), np.float32), ValueError, r"\[matmul\] inner dimensions differ"),
    ],
)
def test_matmul_bad_input(a, b, exc, match):
    with pytest.raises(exc, match=match):
        F.matmul(a, b)


def test_bmm_bad_input():
    with pytest.raises(ValueError, match=r"\[bmm\] a \(B, M, K\) and b \(B, K, N\) do not match"):
        F.bmm(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=r"\[bmm\] a must be 3-D"):
        F.bmm(np.ones((3, 4)), np.ones((4, 5)))


def test_out_checks():
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[matmul\] out must have shape \(2, 4\), got \(4, 2\)"):
        F.matmul(a, b, out=np.empty((4, 2), np.float32))
    with pytest.raises(TypeError, match=r"\[matmul\] out must be float32"):
        F.matmul(a, b, out=np.empty((2, 4), np.float64))
    with pytest.raises(ValueError, match=r"out is updated in place and must be C-contiguous"):
        F.matmul(a, b, out=np.empty((4, 2), np.float32).T)
    sq = np.ones((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"out must not share memory"):
        F.matmul(sq, sq, out=sq)
    big = np.ones((6, 6), np.float32)
    with pytest.raises(ValueError, match=r"out must not share memory"):
        F.matmul(big[:2, :3], big[:3, :4], out=big[2:4].reshape(-1)[:8].reshape(2, 4))
    ro = np.empty((2, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"must be writeable"):
        F.matmul(a, b, out=ro)


@pytest.mark.parametrize("n", ODD_SIZES)
def test_matmul_vector_shapes(rng, n):
    a = random_array(rng, (1, n), np.float32)
    b = random_array(rng, (n, 1), np.float32)
    assert_sum_close(F.matmul(a, b), a @ b, matmul_terms(a, b), n)
