"""Activation layers (PyTorch names and defaults), each a handle on a C++ layer."""

import numpy as np

from .. import _validate as _v
from ._layer_module import LayerModule, layer_factory


class _Pointwise(LayerModule):
    _kind = None

    def __init__(self, param=0.0, dtype=np.float32):
        for name in self._config_keys:  # LeakyReLU's negative_slope, ELU's alpha
            param = _v.check_real(param, type(self).__name__, name)
            object.__setattr__(self, name, param)
        super().__init__(layer_factory("Pointwise", self._kind, float(param)), dtype)


class Sigmoid(_Pointwise):
    """y = 1 / (1 + exp(-x))."""

    _kind = "Sigmoid"

    def __init__(self, dtype=np.float32):
        super().__init__(0.0, dtype)


class Tanh(_Pointwise):
    """y = tanh(x)."""

    _kind = "Tanh"

    def __init__(self, dtype=np.float32):
        super().__init__(0.0, dtype)


class ReLU(_Pointwise):
    """y = max(0, x)."""

    _kind = "ReLU"

    def __init__(self, inplace=False, dtype=np.float32):
        _v.check_bool(inplace, "ReLU", "inplace")
        super().__init__(0.0, dtype)  # `inplace` accepted for PyTorch compatibility; buffers are reused anyway


class LeakyReLU(_Pointwise):
    """y = x if x >= 0 else negative_slope * x."""

    _config_keys = ("negative_slope",)

    _kind = "LeakyReLU"

    def __init__(self, negative_slope=0.01, inplace=False, dtype=np.float32):
        _v.check_bool(inplace, "LeakyReLU", "inplace")
        super().__init__(negative_slope, dtype)


class ELU(_Pointwise):
    """y = x if x > 0 else alpha * (exp(x) - 1)."""

    _config_keys = ("alpha",)

    _kind = "ELU"

    def __init__(self, alpha=1.0, inplace=False, dtype=np.float32):
        _v.check_bool(inplace, "ELU", "inplace")
        super().__init__(alpha, dtype)


class SELU(_Pointwise):
    """y = scale * (x if x > 0 else alpha * (exp(x) - 1)), PyTorch's constants."""

    _kind = "SELU"

    def __init__(self, inplace=False, dtype=np.float32):
        _v.check_bool(inplace, "SELU", "inplace")
        super().__init__(0.0, dtype)


class PReLU(LayerModule):
    """y = x if x >= 0 else a * x, with the slope a learned (one shared, or one per channel of dim 1)."""

    _config_keys = ("num_parameters",)

    def __init__(self, num_parameters=1, init=0.25, dtype=np.float32):
        num_parameters = _v.check_int(num_parameters, "PReLU", "num_parameters", 1)
        init = _v.check_real(init, "PReLU", "init")
        super().__init__(layer_factory("PReLU", num_parameters), dtype)
        self.weight.data[...] = init
        object.__setattr__(self, "num_parameters", num_parameters)

    @property
    def weight(self):
        return self._parameters["weight"]


class RReLU(LayerModule):
    """Randomized leaky ReLU: slope ~ U[lower, upper] per element in training, (lower+upper)/2 in eval."""

    _config_keys = ("lower", "upper")

    def __init__(self, lower=1.0 / 8, upper=1.0 / 3, inplace=False, dtype=np.float32):
        lower, upper = _v.check_real(lower, "RReLU", "lower", 0), _v.check_real(upper, "RReLU", "upper", 0)
        _v.check_bool(inplace, "RReLU", "inplace")
        super().__init__(layer_factory("RReLU", lower, upper), dtype)
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)


def _check_last_dim(cls, dim):
    if dim is None:  # PyTorch's implicit dim depends on the input's ndim (0 for 3-D): deprecated there
        raise ValueError(f"{cls}: dim=None (PyTorch's deprecated implicit choice) is not supported; pass dim=-1")
    if not _v.is_int(dim):
        raise TypeError(f"{cls}: dim must be an integer, got {dim!r}")
    if dim not in (-1, 1):
        raise ValueError(f"{cls}: only the last dimension is supported (dim=-1, or 1 for 2-D input), got dim={dim}")


class Softmax(LayerModule):
    """Softmax over the last dimension: y_i = exp(x_i) / sum_j exp(x_j)."""

    _config_keys = ("dim",)

    def __init__(self, dim=-1, dtype=np.float32):
        _check_last_dim("Softmax", dim)
        super().__init__(layer_factory("Softmax", False), dtype)
        object.__setattr__(self, "dim", dim)

    def forward(self, x):
        if self.dim == 1 and np.ndim(x) != 2:
            raise ValueError(f"Softmax(dim=1) supports 2-D input only, got shape {np.shape(x)}")
        return super().forward(x)


class LogSoftmax(Softmax):
    """log(softmax(x)) over the last dimension, computed stably."""

    def __init__(self, dim=-1, dtype=np.float32):
        _check_last_dim("LogSoftmax", dim)
        LayerModule.__init__(self, layer_factory("Softmax", True), dtype)
        object.__setattr__(self, "dim", dim)


class Maxout(LayerModule):
    """Maxout units: (N, C * pieces) -> (N, C), y_c = max_k x_{c * pieces + k}.

    Put it after a Linear(in, out * pieces): max(w1·x + b1, ..., wk·x + bk) per output unit.
    """

    _config_keys = ("pieces",)

    def __init__(self, pieces, dtype=np.float32):
        pieces = _v.check_int(pieces, "Maxout", "pieces", 1)
        super().__init__(layer_factory("Maxout", pieces), dtype)
        object.__setattr__(self, "pieces", pieces)
