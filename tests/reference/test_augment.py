"""Augmentation reference: exact properties of each op with given parameters (flips are
involutions, shifts and crops move pixels by the drawn offsets, rotation by 0 is the identity and by
90 degrees is np.rot90, erasing covers the stated area and aspect), and the statistics of the draws."""

import math

import numpy as np
import pytest

from fastnn.reference import augment as R

P = R.PARAMS


def params(*rows):
    """(N=1, ops, PARAMS) from one parameter list per op."""
    out = np.zeros((1, len(rows), P))
    for k, r in enumerate(rows):
        out[0, k, :len(r)] = r
    return out


def image(rng, shape=(2, 6, 7)):
    return rng.uniform(-1, 1, (1,) + shape)


@pytest.mark.parametrize("kind,axis", [("hflip", 3), ("vflip", 2)])
def test_flip_is_np_flip_and_twice_is_identity(rng, kind, axis):
    x = image(rng)
    ops = [(kind, {"p": 1.0})]
    once = R.augment_apply(x, ops, params([1]))
    np.testing.assert_array_equal(once, np.flip(x, axis))
    np.testing.assert_array_equal(R.augment_apply(once, ops, params([1])), x)
    np.testing.assert_array_equal(R.augment_apply(x, ops, params([0])), x)  # not drawn: unchanged


@pytest.mark.parametrize("dy,dx", [(0, 0), (2, -1), (-3, 3), (6, 0), (0, -7)])
def test_shift_moves_pixels_by_the_shift(rng, dy, dx):
    x = image(rng)
    y = R.augment_apply(x, [("shift", {"max_dy": 7, "max_dx": 7, "fill": 9.0})], params([dy, dx]))
    _, _, h, w = x.shape
    for r in range(h):
        for c in range(w):
            sr, sc = r - dy, c - dx
            want = x[0, :, sr, sc] if 0 <= sr < h and 0 <= sc < w else np.full(x.shape[1], 9.0)
            np.testing.assert_array_equal(y[0, :, r, c], want)


def test_shift_edge_repeats_the_border(rng):
    x = image(rng)
    y = R.augment_apply(x, [("shift", {"max_dy": 3, "max_dx": 3, "edge": True})], params([2, -3]))
    padded = np.pad(x, ((0, 0), (0, 0), (2, 0), (0, 3)), mode="edge")
    np.testing.assert_array_equal(y, padded[:, :, :6, 3:])


def test_crop_full_size_without_padding_is_identity(rng):
    x = image(rng)
    ops = [("crop", {"out_h": 6, "out_w": 7})]
    np.testing.assert_array_equal(R.augment_apply(x, ops, R.augment_params(ops, x.shape[1:], 1, 3, 4)), x)


@pytest.mark.parametrize("edge", [False, True])
def test_crop_is_a_window_of_the_padded_image(rng, edge):
    x = image(rng)
    pad = dict(pad_top=1, pad_left=2, pad_bottom=3, pad_right=4)
    ops = [("crop", {"out_h": 5, "out_w": 8, "edge": edge, "fill": -4.0, **pad})]
    widths = ((0, 0), (0, 0), (1, 3), (2, 4))
    padded = np.pad(x, widths, mode="edge") if edge else np.pad(x, widths, constant_values=-4.0)
    for top, left in [(0, 0), (5, 5), (2, 3)]:
        y = R.augment_apply(x, ops, params([top, left]))
        np.testing.assert_array_equal(y, padded[:, :, top:top + 5, left:left + 8])


def test_crop_offsets_cover_the_whole_range():
    ops = [("crop", {"out_h": 4, "out_w": 4, "pad_top": 1, "pad_bottom": 1, "pad_left": 1, "pad_right": 1})]
    p = R.augment_params(ops, (1, 5, 5), 400, seed=1)
    assert set(p[:, 0, 0]) == set(range(4)) and set(p[:, 0, 1]) == set(range(4))


def test_rotation_by_zero_is_identity(rng):
    x = image(rng)
    ops = [("affine", {"degrees_lo": 0.0, "degrees_hi": 0.0})]
    np.testing.assert_array_equal(R.augment_apply(x, ops, params([0, 0, 0, 1, 0, 0])), x)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("nearest", [False, True])
def test_rotation_by_90_degrees_is_rot90(rng, k, nearest):
    x = image(rng, (3, 8, 8))
    y = R.augment_apply(x, [("affine", {"nearest": nearest})], params([90.0 * k, 0, 0, 1, 0, 0]))
    # bilinear up to the rounding of cos(90 degrees) = 6e-17 in the sample coordinates
    np.testing.assert_allclose(y, np.rot90(x, k, axes=(2, 3)), rtol=0, atol=1e-13)


def test_affine_translation_by_whole_pixels_is_a_shift(rng):
    x = image(rng)
    y = R.augment_apply(x, [("affine", {"fill": 0.5})], params([0, 2, -1, 1, 0, 0]))  # tx = 2, ty = -1
    want = R.augment_apply(x, [("shift", {"fill": 0.5})], params([-1, 2]))
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-15)


def test_affine_scale_about_the_centre():
    # scale 2 maps output pixel (x, y) to input c + (p - c) / 2: the centre pixel of an odd image stays
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    y = R.augment_apply(x, [("affine", {})], params([0, 0, 0, 2.0, 0, 0]))
    assert y[0, 0, 2, 2] == 1.0
    # output x = 1 reads input 2 + (1 - 2) / 2 = 1.5: halfway between pixel 1 (0) and the centre (1)
    np.testing.assert_allclose(y[0, 0, 2, 1:4], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(y[0, 0, 1:4, 2], [0.5, 1.0, 0.5])
    assert y[0, 0, 0, 2] == 0.0  # reads 1.0: pixel 1, which is 0


def test_inverse_affine_inverts_the_forward_map():
    prm = [23.0, 1.0, -2.0, 1.3, 10.0, -7.0]
    m = R.inverse_affine(prm, 9, 11)
    th, sx, sy = (math.radians(v) for v in (prm[0], prm[4], prm[5]))
    rot = np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]])
    shear = np.array([[1, math.tan(sx)], [0, 1]]) @ np.array([[1, 0], [math.tan(sy), 1]])
    c = np.array([5.0, 4.0])
    p_in = np.array([3.0, 7.0])
    p_out = c + np.array(prm[1:3]) + prm[3] * rot @ shear @ (p_in - c)
    np.testing.assert_allclose(m[:, :2] @ p_out + m[:, 2], p_in, atol=1e-12)


@pytest.mark.parametrize("scale,ratio", [((0.02, 0.33), (0.3, 3.3)), ((0.1, 0.2), (1.0, 1.0)), ((0.3, 0.5), (0.5, 2.0))])
def test_erasing_covers_the_stated_area(rng, scale, ratio):
    h, w = 20, 24
    ops = [("erase", {"p": 1.0, "area_lo": scale[0], "area_hi": scale[1], "log_ratio_lo": math.log(ratio[0]),
                      "log_ratio_hi": math.log(ratio[1]), "value": 7.0})]
    x = rng.uniform(-1, 1, (200, 2, h, w))
    prm = R.augment_params(ops, (2, h, w), len(x), seed=3, step=1)
    y = R.augment_apply(x, ops, prm)
    for i in range(len(x)):
        applied, top, left, eh, ew = prm[i, 0, :5]
        assert applied == 1
        top, left, eh, ew = int(top), int(left), int(eh), int(ew)
        # h = round(sqrt(A r)), w = round(sqrt(A / r)): each within 1/2 of the real-valued side
        a_lo, a_hi = scale[0] * h * w, scale[1] * h * w
        assert math.sqrt(a_lo * ratio[0]) - 0.5 <= eh <= math.sqrt(a_hi * ratio[1]) + 0.5
        assert math.sqrt(a_lo / ratio[1]) - 0.5 <= ew <= math.sqrt(a_hi / ratio[0]) + 0.5
        assert (eh - 0.5) * (ew - 0.5) <= a_hi and (eh + 0.5) * (ew + 0.5) >= a_lo
        assert 0 <= top <= h - eh and 0 <= left <= w - ew
        changed = y[i] != x[i]
        want = np.zeros((2, h, w), bool)
        want[:, top:top + eh, left:left + ew] = True
        np.testing.assert_array_equal(changed, want)
        assert np.all(y[i][want] == 7.0)


def test_erasing_that_never_fits_leaves_the_image():
    ops = [("erase", {"p": 1.0, "area_lo": 0.99, "area_hi": 1.0, "log_ratio_lo": 0.0, "log_ratio_hi": 0.0})]
    x = np.ones((5, 1, 10, 10))
    prm = R.augment_params(ops, (1, 10, 10), 5)
    assert np.all(prm[:, 0, 0] == 0)
    np.testing.assert_array_equal(R.augment_apply(x, ops, prm), x)


def test_erasing_random_values_are_standard_normal():
    ops = [("erase", {"p": 1.0, "area_lo": 0.5, "area_hi": 0.5, "log_ratio_lo": 0.0, "log_ratio_hi": 0.0,
                      "random_value": True})]
    x = np.zeros((40, 3, 20, 20))
    y = R.augment_apply(x, ops, R.augment_params(ops, (3, 20, 20), 40, seed=2))
    v = y[y != 0]
    assert v.size > 40 * 3 * 100
    assert abs(v.mean()) < 5 / math.sqrt(v.size) and abs(v.std() - 1) < 5 / math.sqrt(2 * v.size)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_flip_and_erasing_probability(p):
    n = 4000
    for kind in ("hflip", "erase"):
        prm = R.augment_params([(kind, {"p": p})], (1, 28, 28), n, seed=5, step=2)
        rate = prm[:, 0, 0].mean()
        assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / n) + (0.01 if kind == "erase" else 0), (kind, rate)


def test_shift_draws_every_offset_evenly():
    n = 6000
    prm = R.augment_params([("shift", {"max_dy": 2, "max_dx": 1})], (1, 8, 8), n, seed=9)
    dy, dx = prm[:, 0, 0], prm[:, 0, 1]
    assert set(dy) == {-2, -1, 0, 1, 2} and set(dx) == {-1, 0, 1}
    for v in range(-2, 3):
        assert abs(np.mean(dy == v) - 0.2) < 5 * math.sqrt(0.16 / n)


def test_affine_draws_stay_in_their_ranges():
    f = {"degrees_lo": -30.0, "degrees_hi": 10.0, "translate_x": 0.2, "translate_y": 0.1, "scale_lo": 0.8,
         "scale_hi": 1.2, "shear_x_lo": -5.0, "shear_x_hi": 5.0, "shear_y_lo": 1.0, "shear_y_hi": 2.0}
    prm = R.augment_params([("affine", f)], (1, 20, 30), 2000, seed=1)[:, 0]
    for j, (lo, hi) in enumerate([(-30, 10), (-6, 6), (-2, 2), (0.8, 1.2), (-5, 5), (1, 2)]):
        assert prm[:, j].min() >= lo and prm[:, j].max() <= hi
        assert prm[:, j].max() - prm[:, j].min() > 0.9 * (hi - lo)
    assert np.all(prm[:, 1] == np.round(prm[:, 1])) and np.all(prm[:, 2] == np.round(prm[:, 2]))  # whole pixels


def test_draws_differ_across_images_steps_and_seeds_and_repeat():
    ops = [("affine", {"degrees_lo": -10.0, "degrees_hi": 10.0})]
    a = R.augment_params(ops, (1, 4, 4), 50, seed=1, step=0)[:, 0, 0]
    assert len(set(a)) == 50
    assert not np.array_equal(a, R.augment_params(ops, (1, 4, 4), 50, seed=1, step=1)[:, 0, 0])
    assert not np.array_equal(a, R.augment_params(ops, (1, 4, 4), 50, seed=2, step=0)[:, 0, 0])
    np.testing.assert_array_equal(a, R.augment_params(ops, (1, 4, 4), 50, seed=1, step=0)[:, 0, 0])


def test_gaussian_noise_statistics_and_clip():
    x = np.full((20, 1, 50, 50), 0.5)
    ops = [("noise", {"mean": 0.1, "sigma": 0.2})]
    y = R.augment_batch(x, ops, seed=4)
    d = (y - x).ravel()
    assert abs(d.mean() - 0.1) < 5 * 0.2 / math.sqrt(d.size) and abs(d.std() - 0.2) < 5 * 0.2 / math.sqrt(d.size / 2)
    clipped = R.augment_batch(x, [("noise", {"sigma": 2.0, "clip": True})], seed=4)
    assert clipped.min() == 0.0 and clipped.max() == 1.0


def test_brightness_and_contrast(rng):
    x = rng.uniform(0, 1, (1, 3, 5, 6))
    jitter = {"clamp": False}
    np.testing.assert_allclose(R.augment_apply(x, [("jitter", jitter)], params([1.7, 1.0, 0])), 1.7 * x)
    flat = R.augment_apply(x, [("jitter", jitter)], params([1.0, 0.0, 0]))  # contrast 0: the grayscale mean
    gray = 0.2989 * x[0, 0] + 0.587 * x[0, 1] + 0.114 * x[0, 2]
    np.testing.assert_allclose(flat, np.full_like(x, gray.mean()))
    clamped = R.augment_apply(x, [("jitter", {"clamp": True})], params([3.0, 1.0, 0]))
    np.testing.assert_allclose(clamped, np.minimum(3.0 * x, 1.0))
    # the order bit: brightness then contrast, or contrast then brightness
    b, c = 1.3, 0.6
    m = x.mean()
    one = R.augment_apply(x[:, :1], [("jitter", jitter)], params([b, c, 0]))
    np.testing.assert_allclose(one, c * b * x[:, :1] + (1 - c) * b * x[:, :1].mean())
    two = R.augment_apply(x[:, :1], [("jitter", jitter)], params([b, c, 1]))
    np.testing.assert_allclose(two, b * (c * x[:, :1] + (1 - c) * x[:, :1].mean()))
    assert m > 0


def test_unknown_kind_and_field_are_errors(rng):
    with pytest.raises(ValueError, match="unknown augmentation kind"):
        R.augment_batch(image(rng), [("blur", {})])
    with pytest.raises(ValueError, match="unknown augmentation fields"):
        R.augment_batch(image(rng), [("shift", {"max_shift": 1})])
