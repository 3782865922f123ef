"""Data augmentation in NumPy: the specification of cpp/include/fastnn/kernels/augment.h.

A pipeline is a list of ``(kind, fields)`` pairs (``fastnn.augment.Compose._spec()`` builds it).
Each image draws ``PARAMS`` numbers per op (:func:`augment_params`, bit-identical random bits to
the C++ draw: op k of image i uses ``rng.bits(image_key(seed, step, i), k * SLOTS + j)``), and
:func:`augment_apply` applies given parameters. Images are (N, C, H, W).

Ops apply one after another here; the C++ kernel composes runs of geometric ops into fewer
passes, which must give these images (exactly for whole-pixel ops, to rounding for warps).
"""

import math

import numpy as np

from . import rng

__all__ = ["augment_batch", "augment_params", "augment_apply"]

PARAMS = 8
SLOTS = 64
ERASE_ATTEMPTS = 10
_SALT = 0xA6C35E71D2F94B08

# The C++ AugmentOp defaults, for the fields a spec leaves out.
DEFAULTS = dict(
    p=1.0, max_dy=0, max_dx=0, degrees_lo=0.0, degrees_hi=0.0, translate_x=0.0, translate_y=0.0, scale_lo=1.0,
    scale_hi=1.0, shear_x_lo=0.0, shear_x_hi=0.0, shear_y_lo=0.0, shear_y_hi=0.0, nearest=False, out_h=0, out_w=0,
    pad_top=0, pad_left=0, pad_bottom=0, pad_right=0, edge=False, fill=0.0, mean=0.0, sigma=0.0, clip=False,
    area_lo=0.02, area_hi=0.33, log_ratio_lo=math.log(0.3), log_ratio_hi=math.log(3.3), random_value=False, value=0.0,
    brightness_lo=1.0, brightness_hi=1.0, contrast_lo=1.0, contrast_hi=1.0, clamp=False, clamp_lo=0.0, clamp_hi=1.0,
)


def _fields(fields):
    unknown = set(fields) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown augmentation fields {sorted(unknown)}")
    return {**DEFAULTS, **fields}


def output_shape(kind, f, shape):
    """The (C, H, W) an op gives for input `shape` (only a crop changes it)."""
    return (shape[0], int(f["out_h"]), int(f["out_w"])) if kind == "crop" else tuple(shape)


def image_key(seed, step, i):
    key = rng.stream_key(int(seed) ^ _SALT, step)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps modulo 2**64, as in C++
        return int(rng.mix64(np.uint64(key) + np.uint64(i + 1) * rng.GAMMA))


def _uniforms(key, k):
    """The SLOTS uniforms [0, 1) of op k, and the op's sub-key (its last slot's bits)."""
    idx = np.arange(k * SLOTS + 1, (k + 1) * SLOTS + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        b = rng.mix64(np.uint64(key) + idx * rng.GAMMA)
    return rng.uniform(b, np.float64), int(b[-1])


def _randint(u, lo, hi):
    return float(min(hi, lo + math.floor(u * (hi - lo + 1))))


def _put_key(key):
    return [float(key >> 32), float(key & 0xFFFFFFFF)]


def _draw_one(kind, f, shape, key, k):
    c, h, w = shape
    u, sub = _uniforms(key, k)
    out = [0.0] * PARAMS
    uniform_in = lambda j, lo, hi: lo + (hi - lo) * float(u[j])  # noqa: E731
    if kind in ("hflip", "vflip"):
        out[0] = float(u[0] < f["p"])
    elif kind == "shift":
        out[0] = _randint(u[0], -f["max_dy"], f["max_dy"])
        out[1] = _randint(u[1], -f["max_dx"], f["max_dx"])
    elif kind == "affine":
        max_tx, max_ty = f["translate_x"] * w, f["translate_y"] * h
        out[0] = uniform_in(0, f["degrees_lo"], f["degrees_hi"])
        out[1] = float(np.rint(uniform_in(1, -max_tx, max_tx)))  # round half to even, as C++ nearbyint
        out[2] = float(np.rint(uniform_in(2, -max_ty, max_ty)))
        out[3] = uniform_in(3, f["scale_lo"], f["scale_hi"])
        out[4] = uniform_in(4, f["shear_x_lo"], f["shear_x_hi"])
        out[5] = uniform_in(5, f["shear_y_lo"], f["shear_y_hi"])
    elif kind == "crop":
        out[0] = _randint(u[0], 0, h + f["pad_top"] + f["pad_bottom"] - f["out_h"])
        out[1] = _randint(u[1], 0, w + f["pad_left"] + f["pad_right"] - f["out_w"])
    elif kind == "noise":
        out[0:2] = _put_key(sub)
    elif kind == "erase":
        if u[0] < f["p"]:
            area = float(h) * float(w)
            for t in range(ERASE_ATTEMPTS):  # torchvision's RandomErasing.get_params
                erase_area = area * uniform_in(1 + 4 * t, f["area_lo"], f["area_hi"])
                aspect = math.exp(uniform_in(2 + 4 * t, f["log_ratio_lo"], f["log_ratio_hi"]))
                eh, ew = float(np.rint(math.sqrt(erase_area * aspect))), float(np.rint(math.sqrt(erase_area / aspect)))
                if not (eh < h and ew < w):
                    continue
                out[0:5] = [1.0, _randint(u[3 + 4 * t], 0, h - int(eh)), _randint(u[4 + 4 * t], 0, w - int(ew)), eh, ew]
                out[5:7] = _put_key(sub)
                break
    elif kind == "jitter":
        out[0] = uniform_in(0, f["brightness_lo"], f["brightness_hi"])
        out[1] = uniform_in(1, f["contrast_lo"], f["contrast_hi"])
        out[2] = float(u[2] < 0.5)
    else:
        raise ValueError(f"unknown augmentation kind {kind!r}")
    return out


def augment_params(ops, shape, n, seed=0, step=0):
    """Drawn parameters (n, len(ops), PARAMS) float64 of images 0..n-1 of draw (seed, step)."""
    ops = [(kind, _fields(f)) for kind, f in ops]
    out = np.zeros((n, len(ops), PARAMS))
    for i in range(n):
        key = image_key(seed, step, i)
        s = tuple(shape)
        for k, (kind, f) in enumerate(ops):
            out[i, k] = _draw_one(kind, f, s, key, k)
            s = output_shape(kind, f, s)
    return out


def normal(key, n):
    """Standard normal numbers 0..n-1 of stream `key`: Box-Muller on pairs (cos for even, sin for odd)."""
    q = (np.arange(n, dtype=np.uint64) // np.uint64(2)) * np.uint64(2)
    with np.errstate(over="ignore"):
        b1 = rng.mix64(np.uint64(key) + (q + np.uint64(1)) * rng.GAMMA)
        b2 = rng.mix64(np.uint64(key) + (q + np.uint64(2)) * rng.GAMMA)
    u1 = ((b1 >> np.uint64(11)).astype(np.float64) + 1.0) * (1.0 / 9007199254740992.0)
    u2 = rng.uniform(b2, np.float64)
    r = np.sqrt(-2.0 * np.log(u1))
    even = (np.arange(n) % 2) == 0
    return r * np.where(even, np.cos(2.0 * np.pi * u2), np.sin(2.0 * np.pi * u2))


def _get_key(hi, lo):
    return (int(hi) << 32) | int(lo)


def inverse_affine(prm, h, w):
    """(2, 3) map from output pixel (x, y) to input point, as kernels/augment.h inverse_affine."""
    th = prm[0] * math.pi / 180.0
    cs, sn = math.cos(th), math.sin(th)
    tx, ty, s = math.tan(prm[4] * math.pi / 180.0), math.tan(prm[5] * math.pi / 180.0), prm[3]
    s00, s01, s10, s11 = 1.0 + tx * ty, tx, ty, 1.0
    a00, a01 = s * (cs * s00 + sn * s10), s * (cs * s01 + sn * s11)
    a10, a11 = s * (-sn * s00 + cs * s10), s * (-sn * s01 + cs * s11)
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
    ox, oy = cx + prm[1], cy + prm[2]
    return np.array([[i00, i01, cx - (i00 * ox + i01 * oy)], [i10, i11, cy - (i10 * ox + i11 * oy)]])


def _translate(img, oh, ow, oy, ox, edge, fill):
    """out(y, x) = img(y + oy, x + ox); outside: fill, or the nearest edge pixel."""
    c, h, w = img.shape
    ys, xs = np.arange(oh) + oy, np.arange(ow) + ox
    out = img[:, np.clip(ys, 0, h - 1)][:, :, np.clip(xs, 0, w - 1)]
    if not edge:
        inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
        out = np.where(inside, out, np.asarray(fill, img.dtype))
    return np.ascontiguousarray(out, dtype=img.dtype)


def _affine(img, m, nearest, fill):
    c, h, w = img.shape
    yo, xo = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    xs = m[0, 0] * xo + (m[0, 1] * yo + m[0, 2])
    ys = m[1, 0] * xo + (m[1, 1] * yo + m[1, 2])
    src = img.astype(np.float64)

    def at(yi, xi):
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        v = src[:, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
        return np.where(inside, v, fill)

    with np.errstate(invalid="ignore"):
        if nearest:
            xr, yr = np.floor(xs + 0.5), np.floor(ys + 0.5)
            ok = (xr >= 0) & (xr < w) & (yr >= 0) & (yr < h)
            xr, yr = np.where(ok, xr, 0).astype(np.int64), np.where(ok, yr, 0).astype(np.int64)
            return np.where(ok, src[:, yr, xr], fill).astype(img.dtype)
        ok = (xs > -1) & (xs < w) & (ys > -1) & (ys < h)
        xs, ys = np.where(ok, xs, 0.0), np.where(ok, ys, 0.0)
    xf, yf = np.floor(xs), np.floor(ys)
    fx, fy = xs - xf, ys - yf
    x0, y0 = xf.astype(np.int64), yf.astype(np.int64)
    # bilinear as three linear interpolations: (1 - fy)((1 - fx) v00 + fx v01) + fy((1 - fx) v10 + fx v11)
    top = at(y0, x0) + fx * (at(y0, x0 + 1) - at(y0, x0))
    bottom = at(y0 + 1, x0) + fx * (at(y0 + 1, x0 + 1) - at(y0 + 1, x0))
    out = top + fy * (bottom - top)
    return np.where(ok, out, fill).astype(img.dtype)


def _contrast_mean(img):
    c = img.shape[0]
    weights = [0.2989, 0.587, 0.114] if c == 3 else [1.0 / c] * c
    return sum(wt * img[i].astype(np.float64).mean() for i, wt in enumerate(weights))


def _apply_one(kind, f, prm, img):
    c, h, w = img.shape
    if kind == "hflip":
        return img[:, :, ::-1].copy() if prm[0] else img
    if kind == "vflip":
        return img[:, ::-1].copy() if prm[0] else img
    if kind == "shift":
        return _translate(img, h, w, -int(prm[0]), -int(prm[1]), f["edge"], f["fill"])
    if kind == "crop":
        return _translate(img, int(f["out_h"]), int(f["out_w"]), int(prm[0]) - f["pad_top"],
                          int(prm[1]) - f["pad_left"], f["edge"], f["fill"])
    if kind == "affine":
        return _affine(img, inverse_affine(prm, h, w), f["nearest"], f["fill"])
    if kind == "noise":
        v = img.astype(np.float64) + f["mean"] + f["sigma"] * normal(_get_key(prm[0], prm[1]), img.size).reshape(img.shape)
        return (np.clip(v, 0.0, 1.0) if f["clip"] else v).astype(img.dtype)
    if kind == "erase":
        if not prm[0]:
            return img
        out = img.copy()
        top, left, eh, ew = (int(v) for v in prm[1:5])
        if f["random_value"]:
            value = normal(_get_key(prm[5], prm[6]), c * eh * ew).reshape(c, eh, ew)
        else:
            value = f["value"]
        out[:, top:top + eh, left:left + ew] = value
        return out
    if kind == "jitter":
        def clamp(v):
            return np.clip(v, f["clamp_lo"], f["clamp_hi"]) if f["clamp"] else v

        def brightness(x):
            return clamp(prm[0] * x.astype(np.float64)).astype(img.dtype)

        def contrast(x):
            return clamp(prm[1] * x.astype(np.float64) + (1.0 - prm[1]) * _contrast_mean(x)).astype(img.dtype)

        return brightness(contrast(img)) if prm[2] else contrast(brightness(img))
    raise ValueError(f"unknown augmentation kind {kind!r}")


def augment_apply(x, ops, params):
    """Applies the pipeline with given parameters (N, len(ops), PARAMS) to x (N, C, H, W)."""
    ops = [(kind, _fields(f)) for kind, f in ops]
    out = []
    for i in range(x.shape[0]):
        img = x[i]
        for k, (kind, f) in enumerate(ops):
            img = _apply_one(kind, f, params[i, k], img)
        out.append(img)
    if not out:
        s = tuple(x.shape[1:])
        for kind, f in ops:
            s = output_shape(kind, f, s)
        return np.zeros((0,) + s, x.dtype)
    return np.ascontiguousarray(np.stack(out))


def augment_batch(x, ops, seed=0, step=0):
    """The pipeline on x (N, C, H, W) with the parameters of draw (seed, step)."""
    return augment_apply(x, ops, augment_params(ops, x.shape[1:], x.shape[0], seed, step))
