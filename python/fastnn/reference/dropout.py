"""Inverted dropout: y = x * mask / (1 - p), mask_i ~ Bernoulli(1 - p) from the counter-based RNG.

Element i (flat C-order index) of draw (seed, step) is kept iff the top 32 bits of
``rng.bits(rng.stream_key(seed, step), n)[i]`` are >= floor(p * 2**32); the C++ kernel draws
the same bits, so the masks are identical.
"""

import math
import numbers

import numpy as np

from . import rng

__all__ = ["dropout_backward", "dropout_forward"]


def _check_p(p, op):
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"[{op}] p must be a real number, got {type(p).__name__}")
    if not math.isfinite(p):
        raise ValueError(f"[{op}] p must be finite, got {p}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"[{op}] p must be in [0, 1), got {p}")
    return float(p)  # a Python float keeps float32 arithmetic in float32 (NEP 50)


def _check_u64(v, name, op):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"[{op}] {name} must be an integer, got {type(v).__name__}")
    if not 0 <= int(v) < 2**64:
        raise ValueError(f"[{op}] {name} must be a non-negative integer < 2**64, got {v}")


def dropout_forward(x, p=0.5, seed=0, step=0, training=True):
    """(y, mask) with y = x * mask / (1 - p); the identity (all-True mask) when not training or p = 0."""
    op = "dropout_forward"
    p = _check_p(p, op)
    _check_u64(seed, "seed", op)
    _check_u64(step, "step", op)
    if not training or p == 0:
        return x.copy(), np.ones(x.shape, dtype=bool)
    mask = rng.keep_mask(rng.stream_key(seed, step), x.size, p).reshape(x.shape)
    return np.asarray(x * mask / (1 - p)), mask  # asarray: 0-d input stays an array


def dropout_backward(grad_out, mask, p):
    """grad_in = grad_out * mask / (1 - p)."""
    op = "dropout_backward"
    p = _check_p(p, op)
    if mask.dtype != bool or mask.shape != grad_out.shape:
        raise ValueError(f"[{op}] mask must be bool of shape {grad_out.shape}, got {mask.dtype} {mask.shape}")
    return np.asarray(grad_out * mask / (1 - p))
