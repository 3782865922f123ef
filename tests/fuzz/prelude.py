"""What every fuzz case sees: `from tests.fuzz.prelude import *` and then the case's code.

A case is a line of Python (see strategies.py) that builds its inputs with the short helpers
below, calls one fastnn entry, and checks a successful result with the ``ok_*`` helpers, which
raise :class:`Insane` for a result no correct implementation returns; ``accepted(why)`` follows
a call that should have raised. A case that starts with ``VALID = 1`` has only valid inputs:
an exception from it is a failure too. Cases must stay
one-liners so that the reproducer printed for a failure is ``python -c "<this import>; <case>"``.
"""

import math
import os
import tempfile
import threading  # noqa: F401  (cases may use it)

import numpy as np

import fastnn
from fastnn import functional as F  # noqa: F401
from fastnn import nn, optim  # noqa: F401
from fastnn._config import _C as C  # noqa: F401  (the module loaded: _C, or a portable build's _C_<isa>)
from fastnn.optim import lr_scheduler  # noqa: F401

__all__ = [
    "np", "math", "fastnn", "F", "nn", "optim", "C", "lr_scheduler", "threading", "A", "L", "Py",
    "Insane", "I", "Accepted", "accepted", "ok_array", "ok_rows", "ok_finite", "ok_lr", "ok_type",
    "fin", "small_model", "XY", "saved_model", "write_bytes", "zip_with", "bomb_npy", "bomb_file",
    "within_rss", "tmp_path", "fail",
]

_DTYPES = {"f4": np.float32, "f8": np.float64, "f2": np.float16, "i8": np.int64, "i4": np.int32, "u1": np.uint8,
           "b": np.bool_, "c8": np.complex64, "c16": np.complex128, "O": object}
_FILLS = {"n": None, "0": 0.0, "nan": np.nan, "inf": np.inf, "-inf": -np.inf, "big": 1e30, "huge": 1e300,
          "tiny": 1e-40}


class Insane(Exception):
    """A call returned, but its result is impossible (wrong shape, NaN from finite inputs, ...)."""


class Accepted(Exception):
    """An input that must be refused was accepted."""


def accepted(why):
    """Called by a case right after a statement that should have raised."""
    raise Accepted(why)


def A(shape=(4, 3), dtype="f4", layout="C", fill="n", seed=0):
    """An array of `shape`: dtype code (f4 f8 f2 i8 i4 u1 b c8 c16 O), layout C | F | strided |
    neg (negative strides) | ro (read-only) | bcast (a broadcast view: any extent, no memory) | T
    (a transposed view), fill n (normal) | 0 | nan | inf | -inf | big | huge | tiny (one element
    set to the value, the rest normal; 0 fills all)."""
    shape = tuple(int(s) for s in shape)
    dt = _DTYPES[dtype]
    if layout == "bcast":
        value = 1.5 if fill == "n" else _FILLS.get(fill, 1.5)
        base = np.asarray(value).astype(dt) if dt is not object else np.array(value, object)
        return np.broadcast_to(base.reshape((1,) * len(shape)), shape)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if dt in (np.complex64, np.complex128):
        a = a + 1j * rng.standard_normal(shape)
    if fill == "0":
        a[...] = 0
    elif fill != "n" and a.size:
        a.reshape(-1)[rng.integers(a.size)] = _FILLS[fill]
    if dt in (np.int64, np.int32, np.uint8):
        a = np.nan_to_num(np.abs(a) * 3, nan=0, posinf=0, neginf=0)
    a = a.astype(dt) if dt is not object else a.astype(object)
    if layout == "F" and a.ndim:  # (np.asfortranarray makes a 0-d array 1-d)
        return np.asfortranarray(a)
    if layout == "strided" and a.ndim:
        big = np.zeros((a.shape[0] * 2,) + a.shape[1:], a.dtype)
        big[::2] = a
        return big[::2]
    if layout == "neg" and a.ndim:
        return np.ascontiguousarray(a[::-1])[::-1]
    if layout == "ro":
        a.setflags(write=False)
        return a
    if layout == "T" and a.ndim >= 2:
        return np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1)
    return a


def I(shape, lo=0, hi=3, dtype="i8", seed=0):
    """Integers in [lo, hi) of `shape` (indices, labels, segment tables)."""
    return np.random.default_rng(seed).integers(lo, hi, size=tuple(shape)).astype(_DTYPES[dtype])


def L(n, classes=3, kind="ok", seed=0):
    """Labels for n samples: ok (in range, int64) | neg | big (== classes) | huge (2**40) | float |
    i4 | bool | f-int (float64 holding integers) | 2d ((n, 1))."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, max(classes, 1), size=n)
    if kind == "neg" and n:
        y[0] = -1
    elif kind == "big" and n:
        y[-1] = classes
    elif kind == "huge" and n:
        y[0] = 2**40
    elif kind == "float":
        return y + 0.5
    elif kind == "i4":
        return y.astype(np.int32)
    elif kind == "bool":
        return y.astype(bool)
    elif kind == "f-int":
        return y.astype(np.float64)
    elif kind == "2d":
        return y.reshape(n, 1)
    return y


def fail(*_):
    """For a Python module's backward that raises: fit must pass the user's exception on."""
    raise ValueError("the Python module's backward failed on purpose")


class Py(nn.Module):
    """A module written in Python whose forward/backward are given as functions (x -> y, g -> dx)."""

    def __init__(self, fwd=None, bwd=None):
        super().__init__()
        object.__setattr__(self, "fwd", fwd)
        object.__setattr__(self, "bwd", bwd)

    def forward(self, x):
        return self.fwd(x) if self.fwd else x.copy()

    def backward(self, g):
        return self.bwd(g) if self.bwd else g


def fin(*arrays):
    """True when every float argument is finite (so a finite result is expected)."""
    for a in arrays:
        if isinstance(a, np.ndarray) and a.dtype.kind in "fc" and a.size and not np.isfinite(a).all():
            return False
        if isinstance(a, float) and not math.isfinite(a):
            return False
    return True


def ok_array(r, shape=None, finite=False, dtype=None):
    """r must be an ndarray (of `shape`, `dtype`; all finite when `finite`); returns r."""
    if not isinstance(r, np.ndarray):
        raise Insane(f"expected an ndarray, got {type(r).__name__}")
    if shape is not None and r.shape != tuple(shape):
        raise Insane(f"expected shape {tuple(shape)}, got {r.shape}")
    if dtype is not None and r.dtype != np.dtype(dtype):
        raise Insane(f"expected dtype {np.dtype(dtype)}, got {r.dtype}")
    if finite and r.dtype.kind in "fc" and r.size and not np.isfinite(r).all():
        raise Insane(f"non-finite values from finite inputs (max |r| {np.nanmax(np.abs(r))})")
    if finite and r.dtype.kind in "fc" and r.size and np.abs(r).max() > 1e30:
        raise Insane(f"garbage-sized values from moderate inputs (max |r| {np.abs(r).max():.3g})")
    return r


def ok_rows(r, n):
    ok_array(r)
    if r.ndim < 1 or r.shape[0] != n:
        raise Insane(f"expected {n} rows, got shape {r.shape}")
    return r


def ok_finite(*values):
    """Every value (float, array, dict of floats, tuple) is finite."""
    for v in values:
        if isinstance(v, dict):
            ok_finite(*v.values())
        elif isinstance(v, (tuple, list)):
            ok_finite(*v)
        elif isinstance(v, np.ndarray):
            ok_array(v, finite=True)
        elif isinstance(v, float) and not math.isfinite(v):
            raise Insane(f"non-finite result {v}")
    return values[0] if len(values) == 1 else values


def ok_type(r, *types):
    if not isinstance(r, types):
        raise Insane(f"expected {' or '.join(t.__name__ for t in types)}, got {type(r).__name__}")
    return r


def ok_lr(opt):
    """Every group's learning rate is a finite float >= 0."""
    for g in opt.param_groups:
        lr = g["lr"]
        if not (isinstance(lr, float) and math.isfinite(lr) and lr >= 0):
            raise Insane(f"learning rate became {lr!r}")


MODELS = {
    "lin": lambda i, o: [nn.Linear(i, o)],
    "mlp": lambda i, o: [nn.Linear(i, 8), nn.ReLU(), nn.Linear(8, o)],
    "bn": lambda i, o: [nn.Linear(i, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, o)],
    "act": lambda i, o: [nn.Linear(i, 6), nn.Tanh(), nn.Linear(6, 6), nn.LeakyReLU(0.1), nn.PReLU(6), nn.ELU(),
                         nn.SELU(), nn.Sigmoid(), nn.Linear(6, o)],
    "maxout": lambda i, o: [nn.Linear(i, 2 * o), nn.Maxout(2)],
    "rrelu": lambda i, o: [nn.Linear(i, 8), nn.RReLU(), nn.Linear(8, o), nn.LogSoftmax()],
    "flat": lambda i, o: [nn.Flatten(), nn.Linear(i, o)],
    "nobatch": lambda i, o: [nn.Linear(i, o), nn.Flatten(0)],  # output not batch-first
}


def small_model(kind="mlp", i=5, o=3, py=None, where=1, dtype="f4"):
    """A Sequential from MODELS[kind] with inputs i and outputs o; `py` (a Py module) is inserted at
    position `where` (clamped) when given; dtype f8 makes it float64."""
    layers = MODELS[kind](i, o)
    if py is not None:
        layers.insert(min(max(where, 0), len(layers)), py)
    m = nn.Sequential(*layers)
    return m.double() if dtype == "f8" else m


def XY(n=20, i=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, i)).astype(np.float32), rng.integers(0, classes, n)


_TMP = os.environ.get("FASTNN_FUZZ_TMP") or tempfile.mkdtemp(prefix="fastnn-fuzz-")  # the worker's, removed with it


def tmp_path(name="m.fnn"):
    return os.path.join(_TMP, name)


def saved_model(kind="mlp", with_opt=True):
    """The bytes of a saved small model (with an Adam state when with_opt)."""
    m = small_model(kind if kind not in ("nobatch",) else "mlp")
    opt = optim.Adam(m.parameters())
    p = tmp_path("src.fnn")
    fastnn.save(p, m, opt if with_opt else None)
    with open(p, "rb") as f:
        return f.read()


def write_bytes(data, name="case.fnn"):
    p = tmp_path(name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def zip_with(members, name="crafted.fnn"):
    """A zip file of {member name: bytes or str (JSON text) or dict (dumped as JSON)}; returns its path."""
    import json
    import zipfile

    p = tmp_path(name)
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in members.items():
            z.writestr(k, json.dumps(v) if isinstance(v, (dict, list)) else v)
    return p


def bomb_npy(shape=(20000, 10000), dtype="<f8", declared=None):
    """A .npy header declaring `declared` (or shape) followed by len(shape) elements' worth of zeros:
    the header can lie about the size, and the zeros compress to almost nothing."""
    import numpy.lib.format as fmt

    hdr = {"descr": dtype, "fortran_order": False, "shape": tuple(declared or shape)}
    import io

    b = io.BytesIO()
    fmt.write_array_header_1_0(b, hdr)
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return b.getvalue() + bytes(min(n, 1 << 26))  # at most 64 MiB of zeros, ~65 KB deflated


_BOMBS = {}


def bomb_file(inflated=2**30):
    """A model file for Linear(5, 3) whose weight member inflates to `inflated` bytes of zeros,
    declared honestly in its .npy header, ~1 MB on disk (written once per worker)."""
    import json
    import zipfile

    import numpy.lib.format as fmt

    if inflated not in _BOMBS:
        p = tmp_path(f"bomb-{inflated}.fnn")
        linear = {"class": "Linear", "config": {"in_features": 5, "out_features": 3}}
        arch = {"class": "Sequential", "children": [["0", linear]]}
        import io

        hdr = io.BytesIO()
        fmt.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (inflated // 4,)})
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("fastnn.json", json.dumps({"format": "fastnn-model", "version": 1, "dtype": "float32",
                                                  "architecture": arch}))
            with z.open("model/0.weight.npy", "w", force_zip64=True) as f:
                f.write(hdr.getvalue())
                chunk = bytes(1 << 24)
                for _ in range(inflated // len(chunk)):
                    f.write(chunk)
        _BOMBS[inflated] = p
    return _BOMBS[inflated]


def within_rss(mib, fn, *args, **kwargs):
    """fn(*args, **kwargs), whose result or exception stands only if the process's peak RSS grew by
    less than `mib` MiB over its RSS before the call (the worker resets the peak at each case)."""
    def status(key):
        with open("/proc/self/status") as f:
            return int(next(ln for ln in f if ln.startswith(key)).split()[1]) / 1024

    before = status("VmRSS")
    try:
        return fn(*args, **kwargs)
    finally:
        grown = status("VmHWM") - before
        if grown > mib:
            raise Insane(f"peak RSS grew by {grown:.0f} MiB (bound {mib} MiB)")
