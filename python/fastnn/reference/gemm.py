"""Matrix products."""

import numpy as np

__all__ = ["bmm", "matmul"]


def matmul(a, b, out=None, accumulate=False):
    """C = A B, or C += A B with accumulate (C given as out)."""
    c = np.matmul(a, b)
    if accumulate:
        if out is None:
            raise ValueError("[matmul] accumulate=True adds into out: out must be given")
        out += c
        return out
    if out is not None:
        out[...] = c
        return out
    return c


def bmm(a, b, out=None):
    """C[i] = A[i] B[i] for every i of the batch."""
    c = np.einsum("bmk,bkn->bmn", a, b)
    if out is not None:
        out[...] = c
        return out
    return c
