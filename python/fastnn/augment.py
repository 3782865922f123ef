"""Data augmentation on the CPU in C++: torchvision-like classes composed with :class:`Compose`.

    aug = Compose([RandomShift(2), RandomHorizontalFlip(), RandomRotation(10)])
    x_aug = aug(x, seed=0, step=0)            # x: (N, C, H, W), (N, H, W), or (N, C*H*W) with shape=
    fastnn.fit(model, X, y, augment=aug)      # per training minibatch, fused with the batch gather

Every image of a batch draws its own parameters from a counter-based generator: image i of draw
(seed, step) depends on (seed, step, i) only, so the result is the same for any thread count.
``fit`` uses its own seed and the global step of each batch; validation data is never augmented.
Geometric ops treat the image centre ((W-1)/2, (H-1)/2) as the origin; positive angles rotate
counter-clockwise on screen (torchvision's RandomRotation); values outside the image are ``fill``.
"""

import math

import numpy as np

from . import _validate as _v
from . import random as _random
from .functional import augment as _F

__all__ = [
    "Augmentation", "Compose", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomShift", "RandomRotation",
    "RandomAffine", "RandomCrop", "GaussianNoise", "RandomErasing", "ColorJitter",
]


def _probability(p, fn):
    return _v.check_real(p, fn, "p", 0, 1)


def _pair(value, fn, name, low=None, integer=False, symmetric=True):
    """(lo, hi) from one number v (symmetric: (-v, v), v >= 0) or a pair with lo <= hi."""
    check = _v.check_int if integer else _v.check_real
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{fn}: {name} must be a number or a pair (lo, hi), got {value!r}")
        lo, hi = (check(v, fn, name) if low is None else check(v, fn, name, low) for v in value)
        if lo > hi:
            raise ValueError(f"{fn}: {name} must have lo <= hi, got {value!r}")
        return lo, hi
    v = check(value, fn, name, 0)
    return (-v, v) if symmetric else (v, v)


def _fill(fill, fn):
    return _v.check_real(fill, fn, "fill")


def _padding_mode(mode, fn):
    if mode not in ("constant", "edge"):
        raise ValueError(f"{fn}: padding_mode must be 'constant' or 'edge', got {mode!r}")
    return mode == "edge"


def _interpolation(mode, fn):
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"{fn}: interpolation must be 'bilinear' or 'nearest', got {mode!r}")
    return mode == "nearest"


class Augmentation:
    """One random transform. ``aug(x, seed=..., step=0, shape=None)`` applies it on its own."""

    kind = None

    def _fields(self):
        raise NotImplementedError

    def _spec(self):
        return [(self.kind, self._fields())]

    def __call__(self, x, seed=None, step=0, shape=None):
        return Compose([self])(x, seed=seed, step=step, shape=shape)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"

    def _repr_args(self):
        return {}


class RandomHorizontalFlip(Augmentation):
    """Flips an image left-right with probability p."""

    kind = "hflip"

    def __init__(self, p=0.5):
        self.p = _probability(p, "RandomHorizontalFlip")

    def _fields(self):
        return {"p": self.p}

    def _repr_args(self):
        return {"p": self.p}


class RandomVerticalFlip(RandomHorizontalFlip):
    """Flips an image upside down with probability p."""

    kind = "vflip"

    def __init__(self, p=0.5):
        self.p = _probability(p, "RandomVerticalFlip")


class RandomShift(Augmentation):
    """Translates by whole pixels: dy uniform in [-max_dy, max_dy], dx in [-max_dx, max_dx].

    Args:
        shift: max shift in pixels, one int for both axes or (max_dy, max_dx).
        fill: value of the pixels shifted in (padding_mode='constant').
        padding_mode: 'constant' (fill) or 'edge' (repeat the border pixel).
    """

    kind = "shift"

    def __init__(self, shift, fill=0.0, padding_mode="constant"):
        fn = "RandomShift"
        if isinstance(shift, (tuple, list)):
            if len(shift) != 2:
                raise ValueError(f"{fn}: shift must be an int or a pair (max_dy, max_dx), got {shift!r}")
            self.shift = tuple(_v.check_int(s, fn, "shift", 0) for s in shift)
        else:
            s = _v.check_int(shift, fn, "shift", 0)
            self.shift = (s, s)
        self.fill = _fill(fill, fn)
        self.padding_mode = padding_mode
        self._edge = _padding_mode(padding_mode, fn)

    def _fields(self):
        return {"max_dy": self.shift[0], "max_dx": self.shift[1], "edge": self._edge, "fill": self.fill}

    def _repr_args(self):
        return {"shift": self.shift, "fill": self.fill, "padding_mode": self.padding_mode}


class RandomAffine(Augmentation):
    """Random rotation, translation, scale and shear about the image centre, sampled bilinearly.

    As torchvision's RandomAffine: the angle is uniform in ``degrees`` (a number d means (-d, d));
    ``translate=(a, b)`` shifts by whole pixels uniform in [-a W, a W] and [-b H, b H]; ``scale``
    is uniform in (lo, hi); ``shear`` is an x-shear angle range (a number s means (-s, s)), or 4
    numbers for x and y ranges. Pixels mapped from outside the image are ``fill``.
    """

    kind = "affine"

    def __init__(self, degrees, translate=None, scale=None, shear=None, interpolation="bilinear", fill=0.0):
        fn = type(self).__name__
        self.degrees = _pair(degrees, fn, "degrees")
        if translate is None:
            self.translate = (0.0, 0.0)
        else:
            if not isinstance(translate, (tuple, list)) or len(translate) != 2:
                raise ValueError(f"{fn}: translate must be a pair of fractions (a, b), got {translate!r}")
            self.translate = tuple(_v.check_real(t, fn, "translate", 0, 1) for t in translate)
        if scale is None:
            self.scale = (1.0, 1.0)
        else:
            if not isinstance(scale, (tuple, list)) or len(scale) != 2:
                raise ValueError(f"{fn}: scale must be a pair (lo, hi), got {scale!r}")
            self.scale = _pair(scale, fn, "scale", low=0)
            if self.scale[0] <= 0:
                raise ValueError(f"{fn}: scale must be positive, got {scale!r}")
        if shear is None:
            self.shear = (0.0, 0.0, 0.0, 0.0)
        elif isinstance(shear, (tuple, list)) and len(shear) == 4:
            self.shear = _pair(shear[:2], fn, "shear") + _pair(shear[2:], fn, "shear")
        else:
            self.shear = _pair(shear, fn, "shear") + (0.0, 0.0)
        if any(not -90 < s < 90 for s in self.shear):
            raise ValueError(f"{fn}: shear angles must be in (-90, 90) degrees, got {shear!r}")
        self.interpolation = interpolation
        self._nearest = _interpolation(interpolation, fn)
        self.fill = _fill(fill, fn)

    def _fields(self):
        return {"degrees_lo": self.degrees[0], "degrees_hi": self.degrees[1], "translate_x": self.translate[0],
                "translate_y": self.translate[1], "scale_lo": self.scale[0], "scale_hi": self.scale[1],
                "shear_x_lo": self.shear[0], "shear_x_hi": self.shear[1], "shear_y_lo": self.shear[2],
                "shear_y_hi": self.shear[3], "nearest": self._nearest, "fill": self.fill}

    def _repr_args(self):
        return {"degrees": self.degrees, "translate": self.translate, "scale": self.scale, "shear": self.shear,
                "interpolation": self.interpolation, "fill": self.fill}


class RandomRotation(RandomAffine):
    """Rotation by an angle uniform in ``degrees`` (d means (-d, d)), counter-clockwise for positive angles."""

    def __init__(self, degrees, interpolation="bilinear", fill=0.0):
        super().__init__(degrees, interpolation=interpolation, fill=fill)

    def _repr_args(self):
        return {"degrees": self.degrees, "interpolation": self.interpolation, "fill": self.fill}


class RandomCrop(Augmentation):
    """Pads, then crops a random (h, w) window (torchvision's RandomCrop).

    Args:
        size: int (square) or (h, w).
        padding: None, int (all sides), (left/right, top/bottom) or (left, top, right, bottom).
        fill, padding_mode: 'constant' (fill) or 'edge'.
    """

    kind = "crop"

    def __init__(self, size, padding=None, fill=0.0, padding_mode="constant"):
        fn = "RandomCrop"
        if isinstance(size, (tuple, list)):
            if len(size) != 2:
                raise ValueError(f"{fn}: size must be an int or a pair (h, w), got {size!r}")
            self.size = tuple(_v.check_int(s, fn, "size", 1) for s in size)
        else:
            s = _v.check_int(size, fn, "size", 1)
            self.size = (s, s)
        if padding is None:
            pad = (0, 0, 0, 0)
        elif isinstance(padding, (tuple, list)):
            if len(padding) == 2:
                pad = (padding[0], padding[1], padding[0], padding[1])
            elif len(padding) == 4:
                pad = tuple(padding)
            else:
                raise ValueError(f"{fn}: padding must be an int or a sequence of 2 or 4 ints, got {padding!r}")
        else:
            pad = (padding,) * 4
        self.padding = tuple(_v.check_int(p, fn, "padding", 0) for p in pad)  # left, top, right, bottom
        self.fill = _fill(fill, fn)
        self.padding_mode = padding_mode
        self._edge = _padding_mode(padding_mode, fn)

    def _fields(self):
        left, top, right, bottom = self.padding
        return {"out_h": self.size[0], "out_w": self.size[1], "pad_top": top, "pad_left": left, "pad_bottom": bottom,
                "pad_right": right, "edge": self._edge, "fill": self.fill}

    def _repr_args(self):
        return {"size": self.size, "padding": self.padding, "fill": self.fill, "padding_mode": self.padding_mode}


class GaussianNoise(Augmentation):
    """Adds N(mean, sigma^2) noise to every value; clip=True clamps to [0, 1] (torchvision v2)."""

    kind = "noise"

    def __init__(self, mean=0.0, sigma=0.1, clip=False):
        fn = "GaussianNoise"
        self.mean = _v.check_real(mean, fn, "mean")
        self.sigma = _v.check_real(sigma, fn, "sigma", 0)
        self.clip = _v.check_bool(clip, fn, "clip")

    def _fields(self):
        return {"mean": self.mean, "sigma": self.sigma, "clip": self.clip}

    def _repr_args(self):
        return {"mean": self.mean, "sigma": self.sigma, "clip": self.clip}


class RandomErasing(Augmentation):
    """Erases a random rectangle with probability p (torchvision's RandomErasing).

    The rectangle's area is a fraction uniform in ``scale`` of H * W and its aspect ratio h / w is
    log-uniform in ``ratio``; up to 10 draws are tried until it fits inside the image (else the
    image is unchanged). ``value``: a number for every channel, or 'random' for N(0, 1) values.
    """

    kind = "erase"

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0):
        fn = "RandomErasing"
        self.p = _probability(p, fn)
        if not isinstance(scale, (tuple, list)) or not isinstance(ratio, (tuple, list)):
            raise ValueError(f"{fn}: scale and ratio must be pairs (lo, hi)")
        self.scale = _pair(scale, fn, "scale", low=0)
        if self.scale[1] > 1:
            raise ValueError(f"{fn}: scale must be fractions of the image area in [0, 1], got {scale!r}")
        self.ratio = _pair(ratio, fn, "ratio", low=0)
        if self.ratio[0] <= 0:
            raise ValueError(f"{fn}: ratio must be positive, got {ratio!r}")
        if isinstance(value, str):
            if value != "random":
                raise ValueError(f"{fn}: value must be a number or 'random', got {value!r}")
            self.value = value
        else:
            self.value = _v.check_real(value, fn, "value")

    def _fields(self):
        random = self.value == "random"
        return {"p": self.p, "area_lo": self.scale[0], "area_hi": self.scale[1], "log_ratio_lo": math.log(self.ratio[0]),
                "log_ratio_hi": math.log(self.ratio[1]), "random_value": random,
                "value": 0.0 if random else self.value}

    def _repr_args(self):
        return {"p": self.p, "scale": self.scale, "ratio": self.ratio, "value": self.value}


class ColorJitter(Augmentation):
    """Random brightness and contrast, applied in a random order (torchvision's ColorJitter).

    brightness b: x * f with f uniform in [max(0, 1 - b), 1 + b] (or a (lo, hi) range);
    contrast c: f x + (1 - f) mean, the mean of the image's grayscale (torchvision's weights for
    3 channels, else the mean of all values). Results are clamped to ``value_range`` (None: no clamp).
    """

    kind = "jitter"

    def __init__(self, brightness=0.0, contrast=0.0, value_range=(0.0, 1.0)):
        fn = "ColorJitter"
        self.brightness = self._factor(brightness, fn, "brightness")
        self.contrast = self._factor(contrast, fn, "contrast")
        if value_range is not None:
            if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
                raise ValueError(f"{fn}: value_range must be None or a pair (lo, hi), got {value_range!r}")
            value_range = _pair(value_range, fn, "value_range")
        self.value_range = value_range

    @staticmethod
    def _factor(value, fn, name):
        if isinstance(value, (tuple, list)):
            return _pair(value, fn, name, low=0)
        v = _v.check_real(value, fn, name, 0)
        return (max(0.0, 1.0 - v), 1.0 + v)

    def _fields(self):
        clamp = self.value_range is not None
        lo, hi = self.value_range if clamp else (0.0, 1.0)
        return {"brightness_lo": self.brightness[0], "brightness_hi": self.brightness[1],
                "contrast_lo": self.contrast[0], "contrast_hi": self.contrast[1], "clamp": clamp, "clamp_lo": lo,
                "clamp_hi": hi}

    def _repr_args(self):
        return {"brightness": self.brightness, "contrast": self.contrast, "value_range": self.value_range}


def _image_shape(shape, fn):
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ValueError(f"{fn}: shape must be (C, H, W), got {shape!r}")
    return tuple(_v.check_int(s, fn, "shape", 1) for s in shape)


class Compose(Augmentation):
    """Applies transforms in order, each image drawing its own parameters.

    Args:
        transforms: a list of Augmentation objects (Compose nests).
        shape: (C, H, W) of the images when the data is flat (N, C*H*W); not needed for
            (N, C, H, W) or (N, H, W) data.
    """

    def __init__(self, transforms, shape=None):
        if isinstance(transforms, Augmentation) or not isinstance(transforms, (list, tuple)):
            raise TypeError(f"Compose: transforms must be a list of augmentations, got {type(transforms).__name__}")
        for t in transforms:
            if not isinstance(t, Augmentation):
                raise TypeError(f"Compose: transforms must be fastnn.augment objects, got {type(t).__name__}")
        self.transforms = list(transforms)
        self.shape = None if shape is None else _image_shape(shape, "Compose")

    def _spec(self):
        return [op for t in self.transforms for op in t._spec()]

    def _repr_args(self):
        return {"transforms": self.transforms} | ({"shape": self.shape} if self.shape else {})

    def output_shape(self, shape):
        """(C, H, W) of the images these transforms make from images of `shape`."""
        c, h, w = _image_shape(shape, "Compose.output_shape")
        for kind, f in self._spec():
            if kind == "crop":
                h, w = f["out_h"], f["out_w"]
        return (c, h, w)

    def _images(self, sample_shape, shape, fn):
        """The (C, H, W) of samples of `sample_shape` (X.shape[1:])."""
        shape = self.shape if shape is None else _image_shape(shape, fn)
        sample_shape = tuple(sample_shape)
        if len(sample_shape) == 3:
            if shape is not None and shape != sample_shape:
                raise ValueError(f"{fn}: shape={shape} does not match the images' shape {sample_shape}")
            return sample_shape
        if shape is not None:
            if math.prod(shape) != math.prod(sample_shape):
                raise ValueError(f"{fn}: samples of shape {sample_shape} do not hold images of shape={shape} "
                                 f"({math.prod(shape)} values)")
            return shape
        if len(sample_shape) == 2:
            return (1,) + sample_shape
        raise ValueError(f"{fn}: samples of shape {sample_shape} are not images: give (N, C, H, W) or (N, H, W) data, "
                         "or shape=(C, H, W) for flat data")

    def __call__(self, x, seed=None, step=0, shape=None):
        """Augmented copy of x: (N, C, H, W), (N, H, W), or flat (N, C*H*W) with shape=(C, H, W)."""
        fn = "augment"
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{fn}: x must be a numpy.ndarray, got {type(x).__name__}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{fn}: x must be float32 or float64, got {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"{fn}: x must be a batch (N, ...) of images, got shape {x.shape}")
        seed = int(_random.generator().integers(0, 2**63)) if seed is None else _v.check_seed(seed, fn)
        step = _v.check_seed(step, fn, "step")
        image = self._images(x.shape[1:], shape, fn)
        y = _F.augment_batch(x.reshape((x.shape[0],) + image), self._spec(), seed, step)
        if x.ndim == 4:
            return y
        if x.ndim == 3 and image[0] == 1:
            return y.reshape(y.shape[0], y.shape[2], y.shape[3])
        return y.reshape(y.shape[0], -1)

    def _for_fit(self, sample_shape):
        """(spec, (C, H, W)) for fit's C++ loop; the transforms must keep the sample shape."""
        image = self._images(sample_shape, None, "fit")
        out = self.output_shape(image)
        if out != image:
            raise ValueError(f"fit: augment changes the images' shape from {image} to {out}; the model sees one shape "
                             "in training and evaluation, so crop at full size (RandomCrop(size, padding=...))")
        return self._spec(), image


def for_fit(augment, sample_shape):
    """fit's augment= argument as (spec, (C, H, W)), or (None, None) without augmentation."""
    if augment is None:
        return None, None
    if not isinstance(augment, Augmentation):
        raise TypeError(f"fit: augment must be a fastnn.augment transform (e.g. Compose([...])), "
                        f"got {type(augment).__name__}")
    if not isinstance(augment, Compose):
        augment = Compose([augment])
    return augment._for_fit(sample_shape)


# The CLI's --augment names (python -m fastnn train --augment shift,flip), with the usual
# Fashion-MNIST strengths.
NAMED = {
    "shift": lambda: RandomShift(2),
    "flip": lambda: RandomHorizontalFlip(),
    "vflip": lambda: RandomVerticalFlip(),
    "rotation": lambda: RandomRotation(10),
    "affine": lambda: RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5),
    "crop": lambda: RandomCrop(28, padding=2),
    "erasing": lambda: RandomErasing(),
    "noise": lambda: GaussianNoise(sigma=0.05),
    "jitter": lambda: ColorJitter(brightness=0.2, contrast=0.2),
}


def from_names(text, shape=None):
    """Compose of the comma-separated NAMED transforms, e.g. "shift,flip,rotation"."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMED]
    if unknown or not names:
        raise ValueError(f"augment: unknown augmentation {', '.join(unknown) or repr(text)}; "
                         f"use a comma-separated list of {', '.join(NAMED)}")
    return Compose([NAMED[n]() for n in names], shape=shape)
