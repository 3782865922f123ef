"""Dropout (inverted: kept units are scaled by 1/(1-p) in training; identity in eval)."""

import numpy as np

from .. import _validate as _v
from ._layer_module import LayerModule, layer_factory


class Dropout(LayerModule):
    """Zeroes each element with probability p while training, drawing an independent mask per sample.

    The mask is a function of (seed, step, layer, element): see :func:`fastnn.manual_seed`.
    """

    _config_keys = ("p",)

    def __init__(self, p=0.5, inplace=False, dtype=np.float32):
        p = _v.check_real(p, "Dropout", "p", 0, 1, high_open=True)
        _v.check_bool(inplace, "Dropout", "inplace")
        super().__init__(layer_factory("Dropout", p), dtype)
        object.__setattr__(self, "p", p)
