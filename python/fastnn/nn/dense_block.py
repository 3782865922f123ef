"""DenseBlock and Transition: DenseNet's blocks (Huang et al. 2017), torchvision's _DenseBlock and
_Transition with their names, run as one C++ container (net/dense_block.h)."""

from collections import OrderedDict

import numpy as np

from .. import _validate as _v
from ._layer_module import make_layer
from .activation import ReLU
from .batchnorm import BatchNorm2d
from .container import Container, Sequential


def _conv(*args, **kwargs):
    from .conv import Conv2d  # the conv layer's module (imported when a block is built)

    return Conv2d(*args, **kwargs)


class _DenseLayer(Sequential):
    """torchvision's _DenseLayer: norm1, relu1, conv1 (1x1 to bn_size*k), norm2, relu2, conv2 (3x3 to k);
    with bn_size=None only norm1, relu1, conv1 (3x3 to k). Convolutions without bias. Run alone it
    maps the concatenated features (N, in_channels, H, W) to its k new ones (no dropout); inside a
    DenseBlock the block runs its layers."""

    def __init__(self, in_channels, growth_rate, bn_size, dtype):
        k = growth_rate
        if bn_size is None:
            named = [("norm1", BatchNorm2d(in_channels, dtype=dtype)), ("relu1", ReLU()),
                     ("conv1", _conv(in_channels, k, 3, padding=1, bias=False, dtype=dtype))]
        else:
            mid = bn_size * k
            named = [("norm1", BatchNorm2d(in_channels, dtype=dtype)), ("relu1", ReLU()),
                     ("conv1", _conv(in_channels, mid, 1, bias=False, dtype=dtype)),
                     ("norm2", BatchNorm2d(mid, dtype=dtype)), ("relu2", ReLU()),
                     ("conv2", _conv(mid, k, 3, padding=1, bias=False, dtype=dtype))]
        super().__init__(OrderedDict(named))


class DenseBlock(Container):
    """DenseNet's dense block: layer i sees the channel concatenation of the block input and the
    outputs of layers 1..i-1; the output is the concatenation of the input and all layers' outputs,
    (N, in_channels + num_layers * growth_rate, H, W), as torchvision's _DenseBlock.

    Args:
        num_layers: dense layers, children "denselayer1".."denselayerN" (torchvision's _DenseLayer:
            norm1, relu1, conv1, norm2, relu2, conv2; state_dict names as torchvision's).
        in_channels: channels of the block input.
        growth_rate: k, the channels each layer adds.
        bn_size: the bottleneck: BN-ReLU-1x1 conv to bn_size*k channels, then BN-ReLU-3x3 conv to k
            (DenseNet-B); None: BN-ReLU-3x3 conv alone.
        drop_rate: inverted dropout on each layer's new features while training (torchvision's
            F.dropout after each layer), a random stream per layer.
        dtype: float32 or float64.

    Memory: one feature buffer holds the block input and every layer's new channels, each layer's
    first BatchNorm reads its slice of it in place, and the backward runs on one gradient buffer of
    the same shape (Pleiss et al. 2017). ``shared_scratch`` (default True) keeps the layers' first
    BN-ReLU outputs (and the second ones) in one shared buffer and recomputes them in backward
    instead of keeping one per layer (quadratic in num_layers): measured on DenseNet-BC's first block
    at batch 64, ~6% more CPU time for 0.44 instead of 0.84 GB (bench/bench_dense_block.py).
    """

    _composed = False
    _config_keys = ("num_layers", "in_channels", "growth_rate", "bn_size", "drop_rate")

    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4, drop_rate=0.0, dtype=np.float32):
        fn = "DenseBlock"
        num_layers = _v.check_int(num_layers, fn, "num_layers", 1)
        in_channels = _v.check_int(in_channels, fn, "in_channels", 1)
        growth_rate = _v.check_int(growth_rate, fn, "growth_rate", 1)
        if bn_size is not None:
            bn_size = _v.check_int(bn_size, fn, "bn_size", 1)
        drop_rate = _v.check_real(drop_rate, fn, "drop_rate", 0, 1, high_open=True)
        for name, value in (("num_layers", num_layers), ("in_channels", in_channels), ("growth_rate", growth_rate),
                            ("bn_size", bn_size), ("drop_rate", drop_rate),
                            ("out_channels", in_channels + num_layers * growth_rate), ("_shared_scratch", True)):
            object.__setattr__(self, name, value)
        named = [(f"denselayer{i + 1}", _DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, dtype))
                 for i in range(num_layers)]
        super().__init__(named, self._build, dtype)

    def _build(self, dtype, layers):
        """The C++ block over the dense layers' norm and conv layers (not their Sequentials)."""
        del layers  # the _DenseLayer Sequentials' C++ layers: the block runs their children itself
        parts = ("norm1", "conv1") if self.bn_size is None else ("norm1", "conv1", "norm2", "conv2")
        flat = [getattr(m, part)._layer for m in self._modules.values() for part in parts]
        return make_layer("DenseBlock", dtype, flat, self.in_channels, self.growth_rate, self.bn_size is not None,
                          self.drop_rate, self._shared_scratch)

    @property
    def shared_scratch(self):
        """Whether the first BN-ReLU outputs share one buffer and are recomputed in backward."""
        return self._layer.shared_scratch

    @shared_scratch.setter
    def shared_scratch(self, on):
        on = _v.check_bool(on, "DenseBlock", "shared_scratch")
        object.__setattr__(self, "_shared_scratch", on)
        self._layer.shared_scratch = on

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())


class Transition(Sequential):
    """DenseNet's transition between dense blocks, torchvision's _Transition: BatchNorm2d, ReLU,
    1x1 conv without bias to out_channels, AvgPool2d(2) (children norm, relu, conv, pool).

    The 2x2 average pool runs before the 1x1 conv: the two commute (both are linear, the conv per
    pixel, the pool per channel), and the conv then multiplies 4x fewer pixels. The result is the
    same up to rounding."""

    _composed = False
    _config_keys = ("in_channels", "out_channels")

    def __init__(self, in_channels, out_channels, dtype=np.float32):
        from .pool import AvgPool2d

        in_channels = _v.check_int(in_channels, "Transition", "in_channels", 1)
        out_channels = _v.check_int(out_channels, "Transition", "out_channels", 1)
        object.__setattr__(self, "in_channels", in_channels)
        object.__setattr__(self, "out_channels", out_channels)
        named = [("norm", BatchNorm2d(in_channels, dtype=dtype)), ("relu", ReLU()),
                 ("conv", _conv(in_channels, out_channels, 1, bias=False, dtype=dtype)),
                 ("pool", AvgPool2d(2, stride=2))]
        Container.__init__(self, named, self._build, dtype)

    def _build(self, dtype, layers):
        norm, relu, conv, pool = layers
        return make_layer("Sequential", dtype, [norm, relu, pool, conv])  # pool first: see the class doc
