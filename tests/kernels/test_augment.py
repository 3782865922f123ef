"""Augmentation kernels vs the NumPy reference: the drawn parameters, each op and whole pipelines
with given parameters (float32 and float64, odd shapes, batch of one, empty batch), the fused
draw + apply, the same images for 1 and 2 threads, layouts, and bad input."""

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
SHAPES = [(1, 1, 1, 1), (1, 1, 7, 9), (5, 3, 8, 8), (3, 2, 13, 4)]


def images(rng, shape, dtype):
    return random_array(rng, shape, dtype, 0.0, 1.0)


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
    # elementwise in both dtypes: each output is a short sum (4 bilinear terms, one mean of H*W)
    assert_close(y, R.augment_apply(x, ops, want_params), scale=10 if dtype == np.float32 else 1e3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_images_for_one_and_two_threads(rng, dtype):
    x = images(rng, (96, 1, 28, 28), dtype)
    with num_threads(1):
        one = F.augment_batch(x, PIPELINE, 11, 3)
    with num_threads(2):
        two = F.augment_batch(x, PIPELINE, 11, 3)
    np.testing.assert_array_equal(one, two)


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
