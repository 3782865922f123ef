"""Augmentation kernels vs the NumPy reference: the drawn parameters, each op and whole pipelines
with given parameters (float32 and float64, odd shapes, batch of one, empty batch), the fused
draw + apply, composed runs of geometric ops against one pass per op and against the reference
(random op sequences), the same images for 1, 2 and 3 threads, layouts, and bad input."""

import math

import numpy as np
import pytest

from fastnn import functional as F
from fastnn.reference import augment as R
from tests.conftest import DTYPES, assert_close, num_threads, random_array

CROP = {"out_h": 5, "out_w": 6, "pad_top": 2, "pad_left": 1, "pad_bottom": 0, "pad_right": 3}
OPS = {
    "hflip": [("hflip", {"p": 0.5})],
    "vflip": [("vflip", {"p": 0.5})],
    "shift": [("shift", {"max_dy": 3, "max_dx": 2, "fill": 0.25})],
    "shift_edge": [("shift", {"max_dy": 2, "max_dx": 4, "edge": True})],
    "rotation": [("affine", {"degrees_lo": -40.0, "degrees_hi": 40.0})],
    "rotation_nearest": [("affine", {"degrees_lo": -40.0, "degrees_hi": 40.0, "nearest": True, "fill": -1.0})],
    "affine": [("affine", {"degrees_lo": -15.0, "degrees_hi": 15.0, "translate_x": 0.2, "translate_y": 0.1,
                           "scale_lo": 0.7, "scale_hi": 1.3, "shear_x_lo": -10.0, "shear_x_hi": 10.0,
                           "shear_y_lo": -5.0, "shear_y_hi": 5.0, "fill": 0.5})],
    "crop": [("crop", CROP)],
    "crop_edge": [("crop", {**CROP, "edge": True})],
    "noise": [("noise", {"mean": 0.1, "sigma": 0.3})],
    "noise_clip": [("noise", {"sigma": 0.3, "clip": True})],
    "erase": [("erase", {"p": 0.8, "value": 3.0})],
    "erase_random": [("erase", {"p": 0.8, "area_lo": 0.1, "area_hi": 0.4, "random_value": True})],
    "jitter": [("jitter", {"brightness_lo": 0.6, "brightness_hi": 1.4, "contrast_lo": 0.5, "contrast_hi": 1.5,
                           "clamp": True})],
}
PIPELINE = [("crop", CROP), ("hflip", {"p": 0.5}), ("shift", {"max_dy": 1, "max_dx": 1}),
            OPS["affine"][0], OPS["erase_random"][0], OPS["jitter"][0], OPS["noise"][0]]
SHAPES = [(1, 1, 1, 1), (1, 1, 7, 9), (5, 3, 8, 8), (3, 2, 13, 4), (2, 1, 6, 33)]


def images(rng, shape, dtype):
    return random_array(rng, shape, dtype, 0.0, 1.0)


def warp_error_bound(x, ops, params):
    """Per image, the largest |C++ - reference| that the warps' arithmetic in x's dtype allows.

    A warp computes its sampling point (xs, ys) = m (x, y, 1) in the image's dtype (float32 for
    float32 images): each coordinate is off by at most 4 eps (|m_0| (W-1) + |m_1| (H-1) + |m_2| + 1).
    Bilinear sampling through a border of fill is continuous in the point, with slope at most the
    value span (max - min over the warp's input and fill) per unit along each axis, so the value is
    off by at most span (dx + dy), plus 4 eps |v| for its three interpolations. Later geometric ops
    copy or convexly combine values, so errors add; brightness b and contrast c scale them by at
    most b (|c| + |1 - c|). The spans come from the reference's own intermediate images."""
    eps = float(np.finfo(x.dtype).eps)
    bound = np.zeros(x.shape[0])
    fields = [(kind, {**R.DEFAULTS, **f}) for kind, f in ops]
    for i in range(x.shape[0]):
        img = x[i]
        for k, (kind, f) in enumerate(fields):
            prm = params[i, k]
            if kind == "affine":
                _, h, w = img.shape
                m = R.inverse_affine(prm, h, w)
                dx, dy = (4 * eps * (abs(r[0]) * (w - 1) + abs(r[1]) * (h - 1) + abs(r[2]) + 1) for r in m)
                lo, hi = min(float(img.min()), f["fill"]), max(float(img.max()), f["fill"])
                bound[i] += (hi - lo) * (dx + dy) + 4 * eps * max(abs(lo), abs(hi))
            elif kind == "jitter":
                bound[i] *= prm[0] * (abs(prm[1]) + abs(1 - prm[1]))
            img = R._apply_one(kind, f, prm, img)
    return bound


def assert_warp_close(actual, expected, x, ops, params, rtol):
    """actual within warp_error_bound of expected, plus rtol times the image's largest magnitude (in
    or out) for the other ops' rounding: contrast's f x + (1 - f) mean may cancel, its terms do not."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    per_image = (-1,) + (1,) * (x.ndim - 1)
    bound = warp_error_bound(x, ops, params).reshape(per_image)
    flat = [np.abs(a.reshape(len(a), -1)).max(axis=1, initial=0) for a in (x, expected)]
    scale = np.maximum(*flat).reshape(per_image)
    err = np.abs(actual.astype(np.float64) - expected)
    excess = err - (bound + rtol * scale + np.finfo(x.dtype).tiny)
    assert excess.max(initial=-1) <= 0, f"max error {err.max()} exceeds the bound by {excess.max()}"


def ops_for(name, shape):
    if name.startswith("crop") and shape[2] + 2 < CROP["out_h"]:  # larger than the padded image
        return [("crop", {**OPS[name][0][1], "out_h": 1, "out_w": 1})]
    return OPS[name]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(OPS) + ["pipeline"])
def test_matches_reference(rng, dtype, shape, name):
    ops = PIPELINE if name == "pipeline" else ops_for(name, shape)
    if name == "pipeline" and shape[2] + 2 < CROP["out_h"]:
        ops = [("crop", {**CROP, "out_h": 1, "out_w": 1})] + PIPELINE[1:]
    x = images(rng, shape, dtype)
    seed, step = 2**64 - 1 - shape[2], 7 + shape[3]
    params = F.augment_params(ops, shape[1:], shape[0], seed, step)
    want_params = R.augment_params(ops, shape[1:], shape[0], seed, step)
    assert params.shape == (shape[0], len(ops), R.PARAMS) and params.dtype == np.float64
    np.testing.assert_allclose(params, want_params, rtol=1e-13, atol=1e-13)  # the same random bits
    y = F.augment_batch(x, ops, seed, step)
    np.testing.assert_array_equal(y, F.augment_apply(x, ops, params))  # fused draw + apply: the same
    np.testing.assert_array_equal(y, F.augment_apply(x, ops, params, compose=False))
    # noise and jitter run in float64 as the reference does; contrast's mean sums H*W values
    rtol = 4 * np.finfo(dtype).eps * (1 + math.sqrt(shape[2] * shape[3]))
    assert_warp_close(y, R.augment_apply(x, ops, want_params), x, ops, want_params, rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_images_for_one_two_and_three_threads(rng, dtype):
    x = images(rng, (96, 1, 28, 28), dtype)
    with num_threads(1):
        one = F.augment_batch(x, PIPELINE, 11, 3)
    for n in (2, 3):
        with num_threads(n):
            np.testing.assert_array_equal(F.augment_batch(x, PIPELINE, 11, 3), one)


FILLS = [0.0, 0.25, -1.0, 2.0]


def random_pipeline(r, shape, n_ops):
    """n_ops random geometric ops (distinct fills, both borders, crops that change the shape, warps
    bilinear and nearest), now and then with a constant erase between them, for images of shape."""
    _, h, w = shape
    ops = []
    for _ in range(n_ops):
        kind = str(r.choice(["hflip", "vflip", "shift", "crop", "affine", "affine", "erase"]))
        fill, edge = float(r.choice(FILLS)), bool(r.integers(2))
        if kind in ("hflip", "vflip"):
            f = {"p": float(r.choice([0.5, 1.0]))}
        elif kind == "shift":  # up to shifts that leave the image
            f = {"max_dy": int(r.integers(0, h + 2)), "max_dx": int(r.integers(0, w + 2)), "edge": edge, "fill": fill}
        elif kind == "crop":
            top, left, bottom, right = (int(v) for v in r.integers(0, 3, 4))
            oh, ow = int(r.integers(1, h + top + bottom + 1)), int(r.integers(1, w + left + right + 1))
            f = {"out_h": oh, "out_w": ow, "pad_top": top, "pad_left": left, "pad_bottom": bottom, "pad_right": right,
                 "edge": edge, "fill": fill}
            h, w = oh, ow
        elif kind == "affine":
            f = {"degrees_lo": -35.0, "degrees_hi": 35.0, "translate_x": 0.2, "translate_y": 0.2, "scale_lo": 0.7,
                 "scale_hi": 1.3, "nearest": bool(r.random() < 0.25), "fill": fill}
        else:
            f = {"p": 0.5, "value": fill}
        ops.append((kind, f))
    return ops


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(40))
def test_composed_runs_match_one_pass_per_op_and_the_reference(dtype, case):
    r = np.random.default_rng(100 + case)
    n = 1 if case % 4 == 0 else int(r.integers(2, 5))
    shape = (1 if case % 2 else 3, int(r.integers(1, 12)), int(r.integers(1, 35)))
    ops = random_pipeline(r, shape, int(r.integers(1, 7)))
    x = random_array(r, (n,) + shape, dtype, -1.0, 3.0)
    params = F.augment_params(ops, shape, n, case, 5)
    y = F.augment_apply(x, ops, params)
    np.testing.assert_array_equal(y, F.augment_apply(x, ops, params, compose=False))  # bit for bit
    want = R.augment_apply(x, ops, params)
    if all(kind != "affine" for kind, _ in ops):
        np.testing.assert_array_equal(y, want)  # whole pixels move exactly
    else:
        assert_warp_close(y, want, x, ops, params, 0.0)


def shift_params(*moves):
    """Parameters (1, len(moves), 8): (dy, dx) for a shift, 1 for a flip drawn, None for a warp by 0 degrees."""
    p = np.zeros((1, len(moves), R.PARAMS))
    for k, m in enumerate(moves):
        if isinstance(m, tuple):
            p[0, k, :2] = m
        elif m is None:
            p[0, k, 3] = 1.0  # scale 1
        else:
            p[0, k, 0] = m
    return p


@pytest.mark.parametrize("warp", [False, True])
def test_composed_chain_fills_where_an_intermediate_op_filled(warp):
    x = np.arange(1.0, 31.0).reshape(1, 1, 5, 6)
    shift = ("shift", {"max_dy": 2, "max_dx": 2, "fill": -1.0})
    back = ("shift", {"max_dy": 2, "max_dx": 2, "fill": -2.0})
    identity = [("affine", {"fill": -3.0})] if warp else []  # samples each pixel exactly at its centre
    ops = [shift] + identity + [("hflip", {"p": 1.0}), back]
    y = F.augment_apply(x, ops, shift_params((2, 1), *([None] if warp else []), 1, (-1, -2)))
    a = np.full_like(x, -1.0)  # pixels move by (+2, +1); the rows and column shifted in are -1
    a[..., 2:, 1:] = x[..., :-2, :-1]
    b = a[..., ::-1]
    want = np.full_like(x, -2.0)  # then by (-1, -2): the last row and two columns are -2
    want[..., :-1, :-2] = b[..., 1:, 2:]
    np.testing.assert_array_equal(y, want)
    assert (y == -1).sum() == 7 and (y == -2).sum() == 14  # the first op's fill survives where it was moved


def test_shift_and_flip_around_a_rotation_by_90(rng):
    x = images(rng, (2, 3, 7, 7), np.float64)
    ops = [("hflip", {"p": 1.0}), ("affine", {"degrees_lo": 90.0, "degrees_hi": 90.0}), ("vflip", {"p": 1.0}),
           ("shift", {"max_dy": 1, "max_dx": 1, "fill": 0.5})]
    params = F.augment_params(ops, (3, 7, 7), 2, 0, 0)
    params[:, 3, :2] = [1, -1]
    want = np.full_like(x, 0.5)
    want[:, :, 1:, :-1] = np.rot90(x[..., ::-1], 1, axes=(2, 3))[:, :, ::-1][:, :, :-1, 1:]
    np.testing.assert_allclose(F.augment_apply(x, ops, params), want, rtol=0, atol=1e-13)


def test_images_depend_on_seed_step_and_index(rng):
    x = np.repeat(images(rng, (1, 1, 12, 12), np.float64), 8, axis=0)
    ops = OPS["rotation"]
    y = F.augment_batch(x, ops, 1, 0)
    assert len({a.tobytes() for a in y}) == 8  # every image of the batch draws its own angle
    np.testing.assert_array_equal(y, F.augment_batch(x, ops, 1, 0))
    assert not np.array_equal(y, F.augment_batch(x, ops, 1, 1))
    assert not np.array_equal(y, F.augment_batch(x, ops, 2, 0))


def test_empty_pipeline_copies_and_empty_batch(rng):
    x = images(rng, (3, 2, 5, 5), np.float32)
    y = F.augment_batch(x, [], 0, 0)
    np.testing.assert_array_equal(y, x)
    assert y is not x
    empty = F.augment_batch(np.zeros((0, 1, 8, 8)), [("crop", {"out_h": 4, "out_w": 4})], 0, 0)
    assert empty.shape == (0, 1, 4, 4)
    assert F.augment_params(OPS["shift"], (1, 3, 3), 0).shape == (0, 1, R.PARAMS)


def test_rotation_by_90_is_rot90(rng):
    x = images(rng, (4, 3, 9, 9), np.float64)
    ops = [("affine", {"degrees_lo": 90.0, "degrees_hi": 90.0})]
    np.testing.assert_allclose(F.augment_batch(x, ops, 0, 0), np.rot90(x, 1, axes=(2, 3)), rtol=0, atol=1e-13)
    identity = [("affine", {})]
    np.testing.assert_array_equal(F.augment_batch(x.astype(np.float32), identity, 5, 5), x.astype(np.float32))


def test_flip_twice_is_identity(rng):
    x = images(rng, (6, 2, 5, 7), np.float32)
    for kind in ("hflip", "vflip"):
        ops = [(kind, {"p": 1.0}), (kind, {"p": 1.0})]
        np.testing.assert_array_equal(F.augment_batch(x, ops, 3, 1), x)


def test_non_contiguous_input(rng):
    base = images(rng, (4, 1, 10, 10), np.float64)
    padded = np.zeros((8, 1, 10, 10))
    padded[::2] = base
    ops = PIPELINE[1:]
    np.testing.assert_array_equal(F.augment_batch(padded[::2], ops, 1, 2), F.augment_batch(base, ops, 1, 2))


def test_erased_area_from_the_kernel(rng):
    x = np.ones((300, 1, 16, 16), np.float32)
    ops = [("erase", {"p": 1.0, "value": 0.0, "area_lo": 0.1, "area_hi": 0.3,
                      "log_ratio_lo": math.log(0.5), "log_ratio_hi": math.log(2.0)})]
    fraction = 1 - F.augment_batch(x, ops, 8, 0).mean(axis=(1, 2, 3))
    # round(sqrt(A r)) * round(sqrt(A / r)) within (sqrt(A r) +- 1/2)(sqrt(A / r) +- 1/2)
    lo = (0.1 * 256 - (math.sqrt(0.3 * 256 * 2) + math.sqrt(0.3 * 256 * 2)) / 2) / 256
    assert fraction.min() >= lo and fraction.max() <= 0.3 + 0.1
    assert 0.15 < fraction.mean() < 0.25


BAD = [
    (lambda: F.augment_batch(np.zeros((2, 8, 8)), [], 0, 0), ValueError, r"x must be \(N, C, H, W\)"),
    (lambda: F.augment_batch(np.zeros((2, 1, 0, 8)), [], 0, 0), ValueError, "C, H, W >= 1"),
    (lambda: F.augment_batch(np.zeros((2, 1, 8, 8), np.int32), [], 0, 0), TypeError, "float32 or float64"),
    (lambda: F.augment_batch([[0.0]], [], 0, 0), TypeError, "numpy.ndarray"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("blur", {})], 0, 0), ValueError, "unknown augmentation kind"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("shift", {"max": 1})], 0, 0), ValueError, "unknown field"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("shift", {"max_dy": "a"})], 0, 0), TypeError, "max_dy"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("shift", {"max_dy": 1.5})], 0, 0), ValueError, "integer"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), ["shift"], 0, 0), TypeError, "pair"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), "shift", 0, 0), TypeError, "list"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("hflip", {"p": 1.5})], 0, 0), ValueError, r"p must be in \[0, 1\]"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("hflip", {"p": -0.1})], 0, 0), ValueError, "p must be"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("shift", {"max_dx": -1})], 0, 0), ValueError, "shift must be >= 0"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("crop", {"out_h": 5, "out_w": 4})], 0, 0), ValueError,
     "larger than the padded image"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("crop", {"out_h": 0, "out_w": 4})], 0, 0), ValueError,
     "crop size must be >= 1"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("crop", {"out_h": 2, "out_w": 2, "pad_top": -1})], 0, 0),
     ValueError, "padding must be >= 0"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("affine", {"scale_lo": 0.0})], 0, 0), ValueError, "scale"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("affine", {"shear_x_hi": 90.0})], 0, 0), ValueError, "shear"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("noise", {"sigma": -1.0})], 0, 0), ValueError, "sigma"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [("affine", {"fill": float("nan")})], 0, 0), ValueError, "NaN"),
    (lambda: F.augment_batch(np.zeros((1, 1, 4, 4)), [], -1, 0), ValueError, "seed"),
    (lambda: F.augment_apply(np.zeros((2, 1, 4, 4)), OPS["shift"], np.zeros((2, 2, R.PARAMS))), ValueError,
     r"params must have shape \(2, 1, 8\)"),
    (lambda: F.augment_apply(np.zeros((2, 1, 4, 4)), OPS["shift"], np.zeros((2, 1, R.PARAMS), np.float32)), TypeError,
     "params must be float64"),
    (lambda: F.augment_apply(np.zeros((2, 1, 4, 4)), OPS["shift"], None), TypeError, "params"),
    (lambda: F.augment_params(OPS["shift"], (1, 4), 2), ValueError, r"\(C, H, W\)"),
    (lambda: F.augment_params(OPS["shift"], (1, 0, 4), 2), ValueError, "positive"),
    (lambda: F.augment_params(OPS["shift"], (1, 4, 4), -1), ValueError, "n must be >= 0"),
]


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_apply_rejects_parameters_outside_the_image():
    # augment_apply trusts no one: a crop offset or erase box outside the image must not write out of bounds
    x = np.zeros((1, 1, 4, 4))
    bad_crop = np.zeros((1, 1, R.PARAMS))
    bad_crop[0, 0, :2] = [10, -3]
    with pytest.raises(ValueError, match="params"):
        F.augment_apply(x, [("crop", {"out_h": 2, "out_w": 2})], bad_crop)
    bad_erase = np.zeros((1, 1, R.PARAMS))
    bad_erase[0, 0, :5] = [1, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="params"):
        F.augment_apply(x, [("erase", {"p": 1.0})], bad_erase)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 9, 30), (2, 6, 13), (1, 5, 31)])
@pytest.mark.parametrize("edge", [False, True])
def test_chain_read_through_maps_into_the_rotation(rng, dtype, shape, edge):
    # fit's pipeline with one fill everywhere: the sampler reads the shifted, flipped rows through
    # maps, never copying them (float, width <= 30, AVX-512); large shifts fill whole rows and columns
    fill = 0.75
    ops = [("shift", {"max_dy": 8, "max_dx": 8, "fill": fill, "edge": edge}), ("hflip", {"p": 0.5}),
           ("vflip", {"p": 0.5}), ("affine", {"degrees_lo": -20.0, "degrees_hi": 20.0, "fill": fill})]
    x = images(rng, (17,) + shape, dtype)
    params = F.augment_params(ops, shape, 17, 9, 2)
    y = F.augment_apply(x, ops, params)
    np.testing.assert_array_equal(y, F.augment_apply(x, ops, params, compose=False))
    assert_warp_close(y, R.augment_apply(x, ops, params), x, ops, params, 0.0)
