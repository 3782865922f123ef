"""Linear (fully connected) layer: y = x W^T + b, W of shape (out_features, in_features) as PyTorch."""

import numpy as np

from .. import _validate as _v
from ._layer_module import WeightedLayer, layer_factory

_ACTIVATIONS = ("none", "relu", "leaky_relu", "sigmoid", "tanh")


class Linear(WeightedLayer):
    """Fully connected layer.

    Args:
        in_features, out_features: sizes.
        bias: learn an additive bias (decayed like the weight unless excluded with optim.param_groups).
        init: weight initializer: a name from fastnn.nn.init.get ("he_normal", "xavier_uniform", ...),
            a callable f(array, generator), or None for PyTorch's default (kaiming_uniform a=sqrt(5),
            bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
        generator: seed or np.random.Generator for the initializer (default: fastnn's global seed).
        activation: fuse an activation into the layer ("relu", "leaky_relu", "sigmoid", "tanh").
    """

    _config_keys = ("in_features", "out_features", "activation", "negative_slope")

    def __init__(self, in_features, out_features, bias=True, init=None, generator=None, activation="none",
                 negative_slope=0.01, dtype=np.float32):
        in_features = _v.check_int(in_features, "Linear", "in_features", 1)
        out_features = _v.check_int(out_features, "Linear", "out_features", 1)
        bias = _v.check_bool(bias, "Linear", "bias")
        activation = _v.check_choice(activation, "Linear", "activation", _ACTIVATIONS)
        negative_slope = _v.check_real(negative_slope, "Linear", "negative_slope")
        super().__init__(layer_factory("Linear", in_features, out_features, bias, activation, negative_slope), dtype)
        for name, value in (("in_features", in_features), ("out_features", out_features),
                            ("activation", activation), ("negative_slope", negative_slope)):
            object.__setattr__(self, name, value)
        self.reset_parameters(init, generator)

    def extra_repr(self):
        act = f", activation={self.activation!r}" if self.activation != "none" else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}{act}"
