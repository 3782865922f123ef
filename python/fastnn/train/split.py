"""fit's validation split: Keras's last fraction by default, optionally shuffled and stratified (seeded)."""

import numpy as np

from .. import _validate as _v


class ValidationSplit:
    """Which samples of (X, y) fit holds out for validation: ``fit(validation_split=ValidationSplit(0.2,
    shuffle=True, stratify=True, seed=0))``. A plain float is ``ValidationSplit(fraction)``: the last
    fraction of the samples, before shuffling (Keras), which is biased when the data is sorted.

    Args:
        fraction: in (0, 1).
        shuffle: pick the validation samples at random (seeded) instead of the last ones.
        stratify: hold out the same fraction of every class (integer labels, or one-hot / probability
            rows by their largest entry), so both parts keep the class proportions.
        seed: the random choice of shuffle=True is a function of the seed only.
    """

    def __init__(self, fraction, shuffle=False, stratify=False, seed=0):
        fn = "ValidationSplit"
        self.fraction = _v.check_real(fraction, fn, "fraction", 0, 1, low_open=True, high_open=True)
        self.shuffle = _v.check_bool(shuffle, fn, "shuffle")
        self.stratify = _v.check_bool(stratify, fn, "stratify")
        self.seed = _v.check_seed(seed, fn)

    def __repr__(self):
        return (f"ValidationSplit({self.fraction}, shuffle={self.shuffle}, stratify={self.stratify}, "
                f"seed={self.seed})")

    def indices(self, y, n):
        """(training indices, validation indices), each in increasing order."""
        if self.stratify:
            groups = [np.flatnonzero(_class_of(y) == c) for c in np.unique(_class_of(y))]
        else:
            groups = [np.arange(n)]
        rng = np.random.default_rng(self.seed)
        held = []
        for g in groups:
            k = int(round(len(g) * self.fraction))
            if k:
                held.append(rng.permutation(g)[:k] if self.shuffle else g[-k:])
        val = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
        if len(val) < 1 or len(val) >= n:
            raise ValueError(f"fit: validation_split={self.fraction} of {n} samples leaves no training or no "
                             "validation samples")
        train = np.setdiff1d(np.arange(n), val, assume_unique=True)
        return train, val


def _class_of(y):
    y = np.asarray(y)
    if y.ndim == 1:
        return y
    if y.ndim == 2:
        return y.argmax(axis=1)
    raise ValueError(f"fit: stratify needs class labels (N,) or class rows (N, C), got targets of shape {y.shape}")
