"""Counter-based RNG (reference/rng.py, kernels/rng.h): published SplitMix64 values, an independent
pure-Python version, C++/NumPy bit-identity through dropout masks, statistics of rng.uniform."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn.reference import rng

MASK64 = 2**64 - 1


def mix64_int(z):
    """SplitMix64's finalizer on Python ints (Steele, Lea & Flood 2014), independent of NumPy's uint64."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def bits_int(seed, step, n):
    key = mix64_int(mix64_int(seed) ^ ((step * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & MASK64))
    return [mix64_int((key + (i + 1) * 0x9E3779B97F4A7C15) & MASK64) for i in range(n)]


def test_bits_is_the_splitmix64_sequence():
    # bits(key, i) = mix64(key + (i + 1) * gamma) is SplitMix64 started at state `key`; first
    # outputs for seed 1234567 as published (Rosetta Code "Pseudo-random numbers/Splitmix64").
    want = [0x599ED017FB08FC85, 0x2C73F08458540FA5, 0x883EBCE5A3F27C77, 0x3FBEF740E9177B3F, 0xE3B8346708CB5ECD]
    assert [int(b) for b in rng.bits(1234567, 5)] == want


@pytest.mark.parametrize("seed,step", [(0, 0), (1, 0), (0, 1), (123456789, 987654321), (MASK64, MASK64), (2**63, 5)])
def test_stream_matches_pure_python(seed, step):
    assert [int(b) for b in rng.bits(rng.stream_key(seed, step), 40)] == bits_int(seed, step, 40)


@pytest.mark.parametrize("z", [0, 5, 2**63 + 5, MASK64])
def test_mix64_on_scalars_wraps_without_warnings(z):
    # pyproject turns warnings into errors: NumPy scalar arithmetic warns on overflow, arrays do not
    assert int(rng.mix64(np.uint64(z))) == mix64_int(z)
    assert int(rng.mix64(z)) == mix64_int(z)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.999])
def test_keep_mask_is_top_32_bits_against_threshold(p):
    want = [(b >> 32) >= int(p * 2**32) for b in bits_int(17, 4, 200)]
    assert rng.keep_mask(rng.stream_key(17, 4), 200, p).tolist() == want


@pytest.mark.parametrize("seed,step", [(0, 0), (5, 2**33 + 1), (MASK64, 0), (2**62 + 3, MASK64)])
@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 1023, 1025, 70001])
def test_cpp_and_numpy_masks_are_bit_identical(seed, step, n):
    """rng.h vs rng.py through the only C++ output that exposes the bits: dropout masks at many p."""
    x = np.ones(n, np.float32)
    key = rng.stream_key(seed, step)
    for p in (0.5, 0.01, 0.99, 1 / 3):
        np.testing.assert_array_equal(F.dropout_forward(x, p, seed, step)[1], rng.keep_mask(key, n, p))


def test_cpp_bits_resolved_by_bisection_on_p():
    """Recover the top 8 bits of each C++ draw by bisection on p (masks only show b >> 32 >= p * 2**32)."""
    n, seed, step = 257, 3, 8
    x = np.ones(n)
    lo, hi = np.zeros(n, np.int64), np.full(n, 256, np.int64)  # top byte in [lo, hi)
    for _ in range(8):
        mid = (lo + hi) // 2
        # one forward per candidate threshold: elements whose mid equals t learn top >= t
        for t in np.unique(mid):
            kept = F.dropout_forward(x, t / 256, seed, step)[1]
            sel = mid == t
            lo = np.where(sel & kept, t, lo)
            hi = np.where(sel & ~kept, t, hi)
    assert (hi - lo == 1).all()
    want = rng.bits(rng.stream_key(seed, step), n) >> np.uint64(56)
    np.testing.assert_array_equal(lo, want.astype(np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_mean_and_variance(dtype):
    n = 10**6
    u = rng.uniform(rng.bits(rng.stream_key(42, 0), n), dtype).astype(np.float64)
    assert rng.uniform(rng.bits(1, 4), dtype).dtype == dtype
    assert u.min() >= 0.0 and u.max() < 1.0
    # U(0, 1): mean 1/2, variance 1/12; the sample variance has variance (mu4 - sigma^4) / n, mu4 = 1/80
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 5 * np.sqrt((1 / 80 - 1 / 144) / n)


def test_uniform_float32_uses_24_bits_exactly():
    u = rng.uniform(rng.bits(9, 1000), np.float32)
    np.testing.assert_array_equal(u * np.float32(2**24), np.floor(u * np.float32(2**24)))


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_no_correlation_between_adjacent_elements_steps_and_seeds():
    n = 10**6
    bound = 5 / np.sqrt(n)  # the sample correlation of independent samples has std ~ 1/sqrt(n)
    u0 = rng.uniform(rng.bits(rng.stream_key(7, 0), n), np.float64)
    u1 = rng.uniform(rng.bits(rng.stream_key(7, 1), n), np.float64)
    v0 = rng.uniform(rng.bits(rng.stream_key(8, 0), n), np.float64)
    assert abs(_corr(u0[:-1], u0[1:])) < bound
    assert abs(_corr(u0, u1)) < bound
    assert abs(_corr(u0, v0)) < bound
    # consecutive seeds and steps must not give shifted copies of one stream
    assert abs(_corr(u0[1:], u1[:-1])) < bound
