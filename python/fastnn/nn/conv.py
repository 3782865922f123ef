"""Conv2d: 2-D convolution (cross-correlation) over NCHW, PyTorch's arguments, attributes and layouts."""

import numpy as np

from .. import _validate as _v
from ._layer_module import WeightedLayer, layer_factory

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # torch's; only "zeros" is implemented


def _pair(value, name, low):
    """An int or a pair of ints (tuple or list) as an (h, w) tuple of ints >= low."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(_v.is_int(v) for v in items):
        raise TypeError(f"Conv2d: {name} must be an int or a pair of ints, got {value!r}")
    if min(items) < low:
        raise ValueError(f"Conv2d: {name} must be >= {low}, got {value!r}")
    return tuple(int(v) for v in items)


def _padding(padding, kernel_size, stride, dilation):
    """(the padding attribute as torch keeps it, the (h, w) padding the kernel runs with)."""
    if not isinstance(padding, str):
        pad = _pair(padding, "padding", 0)
        return pad, pad
    if padding == "valid":
        return padding, (0, 0)
    if padding != "same":
        raise ValueError(f"Conv2d: padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"Conv2d: padding='same' is not supported for strided convolutions, got stride={stride}")
    # torch pads d*(k-1) in total, the odd element after; the kernels pad both sides equally
    total = tuple(d * (k - 1) for d, k in zip(dilation, kernel_size))
    if any(t % 2 for t in total):
        raise ValueError(f"Conv2d: padding='same' with kernel_size={kernel_size} and dilation={dilation} needs "
                         "uneven padding (more on one side), which is not supported: give the padding explicitly")
    return padding, tuple(t // 2 for t in total)


class Conv2d(WeightedLayer):
    """2-D convolution of (N, C, H, W) inputs, as torch.nn.Conv2d:

        y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] x_pad[n, g C/G + c, p sh + i dh, q sw + j dw]

    (g = o // (O/G), the group of output channel o), computed as im2col + GEMM (kernels/conv.h).

    Args:
        in_channels, out_channels: C and O, both divisible by groups.
        kernel_size, stride, dilation: int or (h, w) pair.
        padding: int or (h, w) pair of zero padding on each side; "valid" (none) or "same" (stride 1,
            even total padding d*(k-1) per side pair).
        groups: G; each group of O/G output channels sees C/G input channels (G = C: depthwise).
        bias: learn an additive bias (decayed like the weight unless excluded with optim.param_groups). A conv followed by a
            BatchNorm needs none.
        padding_mode: "zeros" only (others raise ValueError).
        init: weight initializer: a name from fastnn.nn.init.get, a callable f(array, generator), or
            None for PyTorch's default (kaiming_uniform a=sqrt(5), bias U(+-1/sqrt(fan_in)),
            fan_in = C/G * kh * kw).
        generator: seed or np.random.Generator for the initializer (default: fastnn's global seed).
    Shapes: weight (O, C/G, kh, kw), bias (O,); input (N, C, H, W) -> output (N, O, P, Q) with
        P = (H + 2 ph - dh (kh - 1) - 1) // sh + 1 (Q likewise).
    """

    _config_keys = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", init=None, generator=None, dtype=np.float32):
        in_channels = _v.check_int(in_channels, "Conv2d", "in_channels", 1)
        out_channels = _v.check_int(out_channels, "Conv2d", "out_channels", 1)
        groups = _v.check_int(groups, "Conv2d", "groups", 1)
        if in_channels % groups:
            raise ValueError(f"Conv2d: in_channels {in_channels} is not divisible by groups={groups}")
        if out_channels % groups:
            raise ValueError(f"Conv2d: out_channels {out_channels} is not divisible by groups={groups}")
        kernel_size = _pair(kernel_size, "kernel_size", 1)
        stride = _pair(stride, "stride", 1)
        dilation = _pair(dilation, "dilation", 1)
        padding, pad = _padding(padding, kernel_size, stride, dilation)
        bias = _v.check_bool(bias, "Conv2d", "bias")
        if padding_mode != "zeros":
            what = "is not supported (only 'zeros')" if padding_mode in _PADDING_MODES else "is unknown"
            raise ValueError(f"Conv2d: padding_mode {padding_mode!r} {what}; valid modes: {', '.join(_PADDING_MODES)}")
        factory = layer_factory("Conv2d", in_channels, out_channels, kernel_size, stride, pad, dilation, groups, bias)
        super().__init__(factory, dtype)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("kernel_size", kernel_size), ("stride", stride), ("padding", padding),
                            ("dilation", dilation), ("groups", groups), ("padding_mode", padding_mode),
                            ("_pad", pad)):
            object.__setattr__(self, name, value)
        self.reset_parameters(init, generator)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
