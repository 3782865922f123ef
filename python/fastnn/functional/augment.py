"""augment: wrappers of the C++ augmentation kernels (reference/augment.py is the specification).

A pipeline ``ops`` is a list of ``(kind, fields)`` pairs; :class:`fastnn.augment.Compose` builds
it from the user-facing classes (``Compose(...)._spec()``). Images are (N, C, H, W).

``compose=True`` (the default, and what ``fit`` runs) applies each run of consecutive geometric
ops (flips, shifts, crops, affine warps) in one pass per warp (kernels/augment.h, above
``Augmenter::apply``); ``compose=False`` applies the ops one pass each, as the reference specifies them.
Both give the same images, bit for bit (a warp samples the same bordered input either way).
"""

from .. import _validate as _v
from .._config import _C


def augment_batch(x, ops, seed=0, step=0, *, compose=True):
    """The pipeline on every image of x with the parameters of draw (seed, step).

    Image i's parameters depend only on (seed, step, i), never on the thread count.

    Args:
        x: (N, C, H, W) float32/float64.
        ops: list of (kind, fields) pairs.
        seed, step: integers in [0, 2**64).
        compose: one pass per run of geometric ops (True) or one per op (False).
    Returns:
        (N, C, H', W') of x's dtype (H', W' differ from H, W only after a crop).
    """
    return _C.augment_batch(x, ops, seed, step, compose=_v.check_bool(compose, "augment_batch", "compose"))


def augment_params(ops, shape, n, seed=0, step=0):
    """The parameters that :func:`augment_batch` draws for images 0..n-1 of (seed, step).

    Args:
        ops: list of (kind, fields) pairs.
        shape: (C, H, W) of the input images.
        n: number of images.
    Returns:
        (n, len(ops), 8) float64; the layout per op is documented in kernels/augment.h
        (draw_augment_params).
    """
    return _C.augment_params(ops, shape, n, seed, step)


def augment_apply(x, ops, params, *, compose=True):
    """The pipeline on x with given parameters (as :func:`augment_params` returns them).

    Args:
        x: (N, C, H, W) float32/float64.
        params: (N, len(ops), 8) float64.
        compose: as in :func:`augment_batch`.
    Returns:
        as :func:`augment_batch`.
    """
    return _C.augment_apply(x, ops, params, compose=_v.check_bool(compose, "augment_apply", "compose"))
