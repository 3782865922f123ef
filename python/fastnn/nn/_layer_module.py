"""LayerModule: a Module that is a thin handle on a C++ layer object."""

import numpy as np

from .. import random as _random
from .._blas_pool import quiet as _quiet_blas
from .._config import _C
from .module import Module, imposed_mode
from .parameter import pack, repack

_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def dtype_suffix(dtype):
    dtype = np.dtype(dtype)
    if dtype not in _DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return _DTYPES[dtype]


def make_layer(kind, dtype, *args, **kwargs):
    """The C++ layer object `kind` for `dtype` (e.g. _C.Linear_float32(...))."""
    return getattr(_C, f"{kind}_{dtype_suffix(dtype)}")(*args, **kwargs)


def layer_factory(kind, *args):
    """dtype -> the C++ layer `kind` built with `args` (what LayerModule keeps to change dtype)."""
    return lambda dtype: make_layer(kind, dtype, *args)


class LayerModule(Module):
    """A built-in layer: parameters live in a flat buffer that the C++ layer reads directly.

    Args:
        factory: dtype -> the C++ layer object (called again by ``to(dtype)``).
        dtype: float32 or float64; layers without parameters follow their input's dtype.
    """

    _config_keys = ()  # constructor arguments saved with the model (fastnn.io)
    # Children composed by the user, which a model file lists (container.Container); False: the
    # module is rebuilt from its config alone (a layer, or a container of fixed structure).
    _composed = False

    def _config(self):
        """Constructor arguments that rebuild this layer (no parameter values)."""
        return {k: getattr(self, k) for k in self._config_keys}

    def extra_repr(self):
        return ", ".join(f"{k}={getattr(self, k)}" for k in self._config_keys)

    def __init__(self, factory, dtype, own_params=True, children=()):
        super().__init__()
        for name, child in children:  # containers: children first, so the factory can see them
            setattr(self, name, child)
        layer = factory(np.dtype(dtype))
        object.__setattr__(self, "_factory", factory)
        object.__setattr__(self, "_layer", layer)
        object.__setattr__(self, "dtype", np.dtype(dtype))
        object.__setattr__(self, "_last_input", None)
        if not own_params:  # containers: the parameters belong to the children
            return
        specs = layer.param_specs()
        if specs:
            names = [name for name, _, _ in specs]
            # every parameter is decayed by a group's weight_decay, as in torch (the layer's own
            # no-decay hint is not used: optim.param_groups makes the usual exclusion by name)
            _, params = pack([shape for _, shape, _ in specs], self.dtype, names)
            for p in params:
                p.owner = self
                self._parameters[p.name] = p
            self._rebind()
        for name, _ in layer.state():
            self._states[name] = self._state_getter(name)

    def _on_mode_change(self):
        """The C++ layers follow this module's own mode (PyTorch's per-module train/eval)."""
        for layer in self._cpp_layers():
            layer.mode = int(self.__dict__["_training"])  # its own mode, not one imposed on this thread

    def _cpp_layers(self):
        """This module's C++ layer, and those containers made for its other uses (see Sequential)."""
        return [self._layer] + [layer for copies in self.__dict__.get("_copies", {}).values() for layer in copies]

    def _set_copies(self, owner, layers):
        """The C++ layers `owner` (a container) made for this module's uses after the first."""
        for layer in layers:
            layer.mode = self._layer.mode
        self.__dict__.setdefault("_copies", {})[id(owner)] = list(layers)

    def _state_getter(self, name):
        def get():
            return dict(self._layer.state())[name]

        return get

    def _rebind(self):
        params = list(self._parameters.values())
        if not params:
            return
        first = params[0]
        self._layer.bind_params(first.buffer.params, first.buffer.grads, first.offset)
        self._layer.params_trainable = any(p.requires_grad for p in params)

    def to(self, dtype):
        """Converts parameters, running statistics and the C++ layer to `dtype` (in place; returns self)."""
        dtype = np.dtype(dtype)
        dtype_suffix(dtype)
        if dtype == self.dtype:
            return self
        old_states = {name: np.array(arr) for name, arr in self._layer.state()}
        mode = self._layer.mode
        object.__setattr__(self, "_layer", self._factory(dtype))
        self._layer.mode = mode
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "_last_input", None)
        for name, arr in self._layer.state():
            arr[...] = old_states[name]
        params = list(self._parameters.values())
        if params:
            repack(params, dtype)  # rebinds this layer; optimizers holding them follow
        return self

    def _as_input(self, x, name="x"):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"[{type(self).__name__}] {name} must be a numpy.ndarray, got {type(x).__name__}")
        if x.dtype != self.dtype and x.dtype in _DTYPES and not any(True for _ in self.parameters()):
            self.to(x.dtype)  # layers without parameters work in either precision, like PyTorch's
        if x.dtype != self.dtype:
            raise TypeError(f"[{type(self).__name__}] {name} is {x.dtype} but the model is {self.dtype}; "
                            f"convert with x.astype(np.{self.dtype})")
        return np.ascontiguousarray(x)  # read-only is fine: the C++ layers never write their input

    def forward(self, x):
        x = self._as_input(x)
        object.__setattr__(self, "_last_input", x)  # the C++ layer reads it again in backward
        with _quiet_blas:
            return self._layer.forward(x, self.training, _random.seed(), _random.next_step(),
                                       imposed_mode() is not None)

    def backward(self, grad_out):
        if self._last_input is None:
            raise RuntimeError(f"[{type(self).__name__}] backward called before forward")
        grad_out = self._as_input(grad_out, "grad_out")
        with _quiet_blas:
            return self._layer.backward(grad_out, True)


class WeightedLayer(LayerModule):
    """A layer with a ``weight`` and an optional ``bias`` (Linear, Conv2d): PyTorch's default
    initialization or a named one, and ``bias`` in the saved configuration."""

    @property
    def weight(self):
        return self._parameters["weight"]

    @property
    def bias(self):
        return self._parameters.get("bias")

    def reset_parameters(self, init=None, generator=None):
        from .. import random as _random
        from . import init as _init

        gen = _random.generator(generator)
        bias = self.bias.data if self.bias is not None else None
        if init is None:
            _init.pytorch_linear_default_(self.weight.data, bias, generator=gen)
            return
        _init.get(init)(self.weight.data, generator=gen)
        if bias is not None:
            bias[...] = 0

    def _config(self):
        return {**super()._config(), "bias": self.bias is not None}
