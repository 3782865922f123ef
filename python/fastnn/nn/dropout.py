"""Dropout (inverted: kept units are scaled by 1/(1-p) in training; identity in eval)."""

import math

import numpy as np

from ._layer_module import LayerModule, layer_factory


class Dropout(LayerModule):
    """Zeroes each element with probability p while training, drawing an independent mask per sample.

    The mask is a function of (seed, step, layer, element): see :func:`fastnn.manual_seed`.
    """

    _config_keys = ("p",)

    def __init__(self, p=0.5, inplace=False, dtype=np.float32):
        if not (isinstance(p, (int, float)) and math.isfinite(p) and 0 <= p < 1):
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        super().__init__(layer_factory("Dropout", float(p)), dtype)
        object.__setattr__(self, "p", p)
