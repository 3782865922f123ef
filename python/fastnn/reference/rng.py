"""Counter-based random numbers, bit-identical to cpp/include/fastnn/kernels/rng.h.

Element i of draw ``step`` under ``seed`` gets ``bits = mix64(key + (i + 1) * GAMMA)`` with
``key = mix64(mix64(seed) ^ (step * GAMMA + C))``; mix64 is SplitMix64's finalizer.
"""

import numpy as np

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_C = np.uint64(0x632BE59BD9B4E019)


def mix64(z):
    """SplitMix64 finalizer on uint64 arrays (arithmetic wraps modulo 2**64)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):  # 0-d input computes on NumPy scalars, which warn on wrap-around
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def stream_key(seed, step):
    """Key of one draw: a function of (seed, step) only."""
    seed = np.array([seed], dtype=np.uint64)
    step = np.array([step], dtype=np.uint64)
    return mix64(mix64(seed) ^ (step * GAMMA + _C))[0]


def bits(key, n):
    """64 random bits for elements 0..n-1 of the stream ``key``."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    return mix64(np.uint64(key) + i * GAMMA)


def uniform(b, dtype):
    """Uniform [0, 1) from the top 24 (float32) or 53 (float64) bits of ``b``."""
    if np.dtype(dtype) == np.float32:
        return (b >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return (b >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def keep_mask(key, n, p):
    """Dropout keep decisions: element kept iff its top 32 bits >= floor(p * 2**32)."""
    threshold = np.uint64(int(p * 4294967296.0))
    return (bits(key, n) >> np.uint64(32)) >= threshold
