"""Argument checks shared by the model builders."""

import numpy as np

from .. import _validate as _v


def image_size(input_size, fn):
    """(H, W) from an int or a pair, each >= 1."""
    if isinstance(input_size, (tuple, list)):
        if len(input_size) != 2:
            raise ValueError(f"[{fn}] input_size must be an int or (H, W), got {input_size!r}")
        return tuple(_v.check_int(s, fn, "input_size", 1) for s in input_size)
    s = _v.check_int(input_size, fn, "input_size", 1)
    return s, s


def check_smallest(size, factor, fn, what):
    """A ValueError when (H, W) cannot be halved log2(factor) times by the network's downsampling."""
    if min(size) < factor:
        raise ValueError(f"[{fn}] input_size {size[0]}x{size[1]} is too small: {what} need at least "
                         f"{factor}x{factor} pixels")


def finish(model, dtype, fn):
    """The model in `dtype` (built in float32; float64 is converted, anything else refused)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"[{fn}] dtype must be float32 or float64, got {dtype}")
    return model if dtype == np.float32 else model.to(dtype)
