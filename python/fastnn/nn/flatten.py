"""Shape-only layers: Flatten and Identity (no copies in C++)."""

import numpy as np

from .. import _validate as _v
from ._layer_module import LayerModule, layer_factory


class Flatten(LayerModule):
    """Flattens dims start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""

    _config_keys = ("start_dim", "end_dim")

    def __init__(self, start_dim=1, end_dim=-1, dtype=np.float32):
        start_dim = _v.check_int(start_dim, "Flatten", "start_dim")
        end_dim = _v.check_int(end_dim, "Flatten", "end_dim")
        super().__init__(layer_factory("Flatten", start_dim, end_dim), dtype)
        object.__setattr__(self, "start_dim", start_dim)
        object.__setattr__(self, "end_dim", end_dim)


class Identity(LayerModule):
    """Returns its input."""

    def __init__(self, dtype=np.float32):
        super().__init__(layer_factory("Identity"), dtype)
