"""2-D pooling layers over NCHW feature maps, with torch.nn's signatures (kernels/pool.h).

The C++ layers check the arguments (``[MaxPool2d] padding should be at most half of kernel_size``)
and each input shape (``[MaxPool2d] expected input (N, C, H, W), got (8, 784)``).
"""

import numbers

import numpy as np

from ._layer_module import LayerModule, layer_factory


def _arg(v):
    """An argument as torch keeps it, in Python types (a model file stores it as JSON): NumPy ints
    and bools as int and bool, a list (as read from a model file) as a tuple. Anything else is
    passed on for the C++ layer to refuse (a bool where an int belongs, a float)."""
    if isinstance(v, (list, tuple)):
        return tuple(_arg(e) for e in v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return int(v)
    return v


class MaxPool2d(LayerModule):
    """The maximum over each (dilated) window; backward routes each gradient to its argmax.

    ``MaxPool2d(2)`` is the non-overlapping 2x2 pool with a fast path. No ``return_indices``.
    """

    _config_keys = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, dtype=np.float32):
        kernel_size, padding, dilation, ceil_mode = _arg(kernel_size), _arg(padding), _arg(dilation), _arg(ceil_mode)
        stride = kernel_size if stride is None else _arg(stride)
        super().__init__(layer_factory("MaxPool2d", kernel_size, stride, padding, dilation, ceil_mode), dtype)
        for k, v in zip(self._config_keys, (kernel_size, stride, padding, dilation, ceil_mode)):
            object.__setattr__(self, k, v)


class AvgPool2d(LayerModule):
    """The mean over each window (torch.nn.AvgPool2d: padding, ceil_mode, count_include_pad,
    divisor_override)."""

    _config_keys = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, dtype=np.float32):
        kernel_size, padding, ceil_mode = _arg(kernel_size), _arg(padding), _arg(ceil_mode)
        count_include_pad, divisor_override = _arg(count_include_pad), _arg(divisor_override)
        stride = kernel_size if stride is None else _arg(stride)
        super().__init__(layer_factory("AvgPool2d", kernel_size, stride, padding, ceil_mode, count_include_pad,
                                       divisor_override), dtype)
        for k, v in zip(self._config_keys, (kernel_size, stride, padding, ceil_mode, count_include_pad,
                                            divisor_override)):
            object.__setattr__(self, k, v)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"  # torch's


class AdaptiveAvgPool2d(LayerModule):
    """The mean over windows that divide the input into output_size (torch's start = floor(p H / P),
    end = ceil((p + 1) H / P)); ``AdaptiveAvgPool2d(1)`` is global average pooling.

    Args:
        output_size: int or (P, Q); None keeps the input's size on that axis.
    """

    _config_keys = ("output_size",)

    def __init__(self, output_size, dtype=np.float32):
        output_size = _arg(output_size)
        super().__init__(layer_factory("AdaptiveAvgPool2d", output_size), dtype)
        object.__setattr__(self, "output_size", output_size)


class GlobalAvgPool2d(LayerModule):
    """(N, C, H, W) -> (N, C): the mean of each feature map, as AdaptiveAvgPool2d(1) then Flatten()
    in one layer (Keras's GlobalAveragePooling2D)."""

    def __init__(self, dtype=np.float32):
        super().__init__(layer_factory("GlobalAvgPool2d"), dtype)
