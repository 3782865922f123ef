"""Reference for kernels/finite.h: where the first NaN or infinity is."""

import numpy as np

__all__ = ["first_nonfinite"]


def first_nonfinite(x):
    """Flat (C-order) index of the first NaN or infinity in x, or -1."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(x)))
    return int(bad[0]) if bad.size else -1
