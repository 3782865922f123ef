"""fastnn.augment: the torchvision-like classes map their arguments to the kernels' fields, Compose
runs them in order on (N, C, H, W), (N, H, W) and flat data, and every bad argument is a clear error."""

import math

import numpy as np
import pytest

import fastnn
from fastnn import augment as A
from fastnn.reference import augment as R


def images(n=8, shape=(1, 10, 10), dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n,) + shape).astype(dtype)


ALL = [A.RandomHorizontalFlip(), A.RandomVerticalFlip(0.3), A.RandomShift((1, 2), padding_mode="edge"),
       A.RandomRotation(20), A.RandomAffine(10, translate=(0.1, 0.2), scale=(0.9, 1.1), shear=(-5, 5, 0, 3)),
       A.RandomCrop(10, padding=2), A.GaussianNoise(sigma=0.05, clip=True), A.RandomErasing(value="random"),
       A.ColorJitter(brightness=0.3, contrast=(0.5, 1.5))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compose_is_the_reference_pipeline(dtype):
    x = images(dtype=dtype)
    aug = A.Compose(ALL)
    y = aug(x, seed=3, step=4)
    want = R.augment_batch(x, aug._spec(), 3, 4)
    np.testing.assert_allclose(y, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    assert y.dtype == dtype and y.shape == x.shape
    assert A.Compose([A.Compose(ALL[:4]), A.Compose(ALL[4:])])._spec() == aug._spec()  # nesting flattens


def test_layouts_flat_and_single_channel():
    x = images(6, (1, 8, 8))
    aug = A.Compose([A.RandomShift(2), A.RandomRotation(30)])
    y4 = aug(x, seed=1)
    np.testing.assert_array_equal(aug(x[:, 0], seed=1), y4[:, 0])  # (N, H, W): one channel
    flat = aug(x.reshape(6, -1), seed=1, shape=(1, 8, 8))
    assert flat.shape == (6, 64)
    np.testing.assert_array_equal(flat, y4.reshape(6, -1))
    np.testing.assert_array_equal(A.Compose(aug.transforms, shape=(1, 8, 8))(x.reshape(6, -1), seed=1), flat)
    cropped = A.RandomCrop(5)(x.reshape(6, -1), seed=1, shape=(1, 8, 8))
    assert cropped.shape == (6, 25)
    assert A.Compose([A.RandomCrop((4, 6))]).output_shape((3, 8, 8)) == (3, 4, 6)


def test_single_transform_callable_and_default_seed():
    x = images()
    fastnn.manual_seed(0)
    a = A.RandomRotation(30)(x)
    fastnn.manual_seed(0)
    np.testing.assert_array_equal(A.RandomRotation(30)(x), a)  # seed=None: from the global seed
    assert not np.array_equal(A.RandomRotation(30)(x), a)       # ... and a fresh draw each call


def test_rotation_by_90_degrees_and_flip_twice():
    x = images(3, (2, 7, 7), np.float64)
    np.testing.assert_allclose(A.RandomRotation((90, 90))(x, seed=0), np.rot90(x, 1, axes=(2, 3)), atol=1e-13)
    np.testing.assert_array_equal(A.Compose([A.RandomVerticalFlip(1), A.RandomVerticalFlip(1)])(x, seed=0), x)


def test_arguments_map_to_fields():
    assert A.RandomShift(3)._fields() == {"max_dy": 3, "max_dx": 3, "edge": False, "fill": 0.0}
    assert A.RandomRotation(10)._fields()["degrees_lo"] == -10.0
    f = A.RandomAffine((5, 20), shear=7)._fields()
    assert (f["degrees_lo"], f["degrees_hi"], f["shear_x_lo"], f["shear_x_hi"], f["shear_y_hi"]) == (5, 20, -7, 7, 0)
    c = A.RandomCrop((4, 5), padding=(1, 2))._fields()
    assert (c["pad_left"], c["pad_top"], c["pad_right"], c["pad_bottom"], c["out_h"], c["out_w"]) == (1, 2, 1, 2, 4, 5)
    e = A.RandomErasing(ratio=(0.5, 2.0))._fields()
    assert e["log_ratio_lo"] == math.log(0.5) and e["log_ratio_hi"] == math.log(2.0)
    j = A.ColorJitter(brightness=1.5, value_range=None)._fields()
    assert (j["brightness_lo"], j["brightness_hi"], j["clamp"]) == (0.0, 2.5, False)
    assert "RandomShift(shift=(3, 3)" in repr(A.Compose([A.RandomShift(3)]))


BAD = [
    (lambda: A.RandomHorizontalFlip(1.5), ValueError, r"p must be in \[0, 1\]"),
    (lambda: A.RandomVerticalFlip(-0.1), ValueError, "p must be"),
    (lambda: A.RandomErasing(p=2), ValueError, "p must be"),
    (lambda: A.RandomShift(-1), ValueError, "shift must be a non-negative integer"),
    (lambda: A.RandomShift(1.5), ValueError, "shift must be"),
    (lambda: A.RandomShift((1, 2, 3)), ValueError, "pair"),
    (lambda: A.RandomShift(1, padding_mode="reflect"), ValueError, "padding_mode must be 'constant' or 'edge'"),
    (lambda: A.RandomRotation(-5), ValueError, "degrees"),
    (lambda: A.RandomRotation((10, 5)), ValueError, "lo <= hi"),
    (lambda: A.RandomRotation(5, interpolation="bicubic"), ValueError, "interpolation"),
    (lambda: A.RandomAffine(0, translate=(0.5, 2)), ValueError, "translate"),
    (lambda: A.RandomAffine(0, scale=(0, 1)), ValueError, "scale must be positive"),
    (lambda: A.RandomAffine(0, shear=95), ValueError, "shear"),
    (lambda: A.RandomCrop(0), ValueError, "size must be a positive integer"),
    (lambda: A.RandomCrop(-3), ValueError, "size"),
    (lambda: A.RandomCrop(4, padding=-1), ValueError, "padding must be a non-negative integer"),
    (lambda: A.RandomCrop(4, padding=(1, 2, 3)), ValueError, "2 or 4"),
    (lambda: A.GaussianNoise(sigma=-1), ValueError, "sigma"),
    (lambda: A.GaussianNoise(clip=1), TypeError, "clip"),
    (lambda: A.RandomErasing(scale=(0.5, 1.5)), ValueError, "scale"),
    (lambda: A.RandomErasing(ratio=(0, 1)), ValueError, "ratio must be positive"),
    (lambda: A.RandomErasing(value="noise"), ValueError, "'random'"),
    (lambda: A.ColorJitter(brightness=-0.5), ValueError, "brightness"),
    (lambda: A.ColorJitter(value_range=(1, 0)), ValueError, "lo <= hi"),
    (lambda: A.Compose(A.RandomShift(1)), TypeError, "list"),
    (lambda: A.Compose([lambda x: x]), TypeError, "fastnn.augment"),
    (lambda: A.Compose([], shape=(28, 28)), ValueError, r"\(C, H, W\)"),
    (lambda: A.RandomShift(1)([[0.0]]), TypeError, "numpy.ndarray"),
    (lambda: A.RandomShift(1)(np.zeros((2, 4, 4), np.int64)), TypeError, "float32 or float64"),
    (lambda: A.RandomShift(1)(np.zeros(4)), ValueError, "batch"),
    (lambda: A.RandomShift(1)(np.zeros((2, 16))), ValueError, "shape=\\(C, H, W\\)"),
    (lambda: A.RandomShift(1)(np.zeros((2, 16)), shape=(1, 3, 3)), ValueError, "do not hold images"),
    (lambda: A.RandomShift(1)(np.zeros((2, 1, 4, 4)), shape=(1, 2, 8)), ValueError, "does not match"),
    (lambda: A.RandomShift(1)(np.zeros((2, 1, 4, 4)), seed=-1), ValueError, "seed"),
    (lambda: A.RandomCrop(5)(np.zeros((2, 1, 4, 4))), ValueError, "larger than the padded image"),
]


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_named_transforms_and_the_cli(capsys):
    from fastnn.__main__ import main

    aug = A.from_names("shift, flip,rotation", shape=(1, 28, 28))
    assert [type(t).__name__ for t in aug.transforms] == ["RandomShift", "RandomHorizontalFlip", "RandomRotation"]
    assert all(A.from_names(name, (1, 28, 28))._for_fit((784,))[1] == (1, 28, 28) for name in A.NAMED)
    with pytest.raises(ValueError, match="unknown augmentation blur"):
        A.from_names("shift,blur")
    assert main(["train", "--model", "linear", "--epochs", "1", "--train-size", "256", "--data", "bundled", "--quiet",
                 "--augment", "shift,flip"]) == 0
    assert "test accuracy" in capsys.readouterr().out
