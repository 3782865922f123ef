"""Module: the PyTorch-familiar base class (parameters, train/eval, state_dict, forward/backward).

Built-in layers are thin handles on C++ layer objects (see ``_layer_module.py``); containers compose
the same objects in C++, so ``model(x)``, ``model.backward(g)``, ``train_step`` and ``fit`` run one
implementation. A Module written in Python implements ``forward(x)`` and ``backward(grad_out)``
itself (there is no autograd): backward returns the gradient with respect to the input and
accumulates (+=) the gradients of its parameters.

The contract of such a module, checked at every call when it runs inside a Sequential (and so in
fit, evaluate, predict and train_step), before any C++ layer reads what it returned:

- ``forward(x)`` returns a non-empty ndarray of the model's dtype whose first dimension is the
  batch, ``x.shape[0]``;
- ``backward(grad_out)`` returns an ndarray of exactly the shape of that forward's ``x``;
- optionally, ``output_shape(shape) -> tuple`` gives the whole output shape for an input shape
  (positive ints, the batch first); the output is then checked against it. Without it only the
  batch dimension is promised, and the module's output shape is known only by running it.

A violation is a TypeError (not an ndarray, another dtype) or a ValueError naming the module and
the shapes, e.g. ``[Sequential] child 1 (MyModule) returned shape (3, 8) for an input of shape
(64, 8): its output must keep the batch (64) as its first dimension``.
"""

import threading
from collections import OrderedDict, namedtuple

import numpy as np

from .. import _validate as _v
from .parameter import Parameter, as_real, repack, shared_buffer


def check_child(owner, name, module):
    """ValueError/TypeError for a child name or module that add_module cannot take."""
    where = f"{type(owner).__name__}.add_module"
    if not isinstance(name, str):
        raise TypeError(f"{where}: name must be a string, got {type(name).__name__}")
    if not name or "." in name:
        raise ValueError(f"{where}: name must be a non-empty string without '.', got {name!r}")
    if not isinstance(module, Module):
        raise TypeError(f"{where}: {name!r} must be a fastnn.nn.Module, got {type(module).__name__}")
    if name not in owner.__dict__.get("_modules", {}) and (name in owner.__dict__ or hasattr(type(owner), name)):
        raise KeyError(f"{where}: attribute {name!r} already exists")


def _claim_parameters(module, params):
    """Records `module` as the model of `params` (the outermost module flattened around them),
    so that a pickled Parameter or optimizer refers to its place in the model that is pickled."""
    inside = {}  # id(current model) -> whether `module` is part of it
    for p in params:
        current = p.model
        if current is None or current is module:
            p.model = module
            continue
        if id(current) not in inside:
            inside[id(current)] = any(m is module for m in current.modules())
        if not inside[id(current)]:
            p.model = module


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What load_state_dict returns, as PyTorch's: the model's keys the dict lacked and the dict's
    keys the model lacks (both empty with strict=True, which raises instead)."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


# The mode evaluate/predict impose on the calls of this thread (None: every module's own), so that
# the submodules a Python-written module calls run in eval mode without their modes changing for
# other threads.
_imposed = threading.local()


def imposed_mode():
    """True/False while evaluate or predict runs a Python-written module in this thread, else None."""
    return getattr(_imposed, "mode", None)


class Module:
    """Base class of every layer and model."""

    @property
    def training(self):
        imposed = getattr(_imposed, "mode", None)
        if imposed is not None:
            return imposed
        try:
            return self.__dict__["_training"]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no 'training': Module.__init__() was not called") from None

    @training.setter
    def training(self, mode):
        self.__dict__["_training"] = mode

    def __init__(self):
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_parameters", OrderedDict())  # local name -> Parameter
        object.__setattr__(self, "_states", OrderedDict())  # local name -> callable returning an array view
        object.__setattr__(self, "training", True)

    # --- structure -------------------------------------------------------------------------------

    def __setattr__(self, name, value):
        if isinstance(value, (Module, Parameter)) and "_modules" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning submodules or parameters")
        if isinstance(value, Module) and name in self.__dict__.get("_modules", {}):
            self._modules[name] = value  # a child replaced keeps its place (PyTorch's order)
            object.__setattr__(self, name, value)
            return
        self.__dict__.get("_modules", {}).pop(name, None)
        self.__dict__.get("_parameters", {}).pop(name, None)
        if isinstance(value, Module):
            self._modules[name] = value
        elif isinstance(value, Parameter):
            value.name = value.name or name
            self._parameters[name] = value
        object.__setattr__(self, name, value)

    def add_module(self, name, module):
        """Adds (or replaces) the child `name` (``self.name = module``, checked; PyTorch's add_module)."""
        check_child(self, name, module)
        setattr(self, name, module)

    def apply(self, fn):
        """Calls fn(m) on every submodule (children first, as PyTorch) and on self; returns self."""
        if not callable(fn):
            raise TypeError(f"{type(self).__name__}.apply: fn must be callable, got {type(fn).__name__}")
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix="", remove_duplicate=True):
        """(name, module) pairs, this module first. A module used in several places (shared
        weights) is yielded once, under its first name, unless remove_duplicate=False (PyTorch's rule)."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if remove_duplicate:
                if id(m) in seen:
                    continue
                seen.add(id(m))
            yield name, m
            stack.extend(reversed([(f"{name}.{c}" if name else c, child) for c, child in m._modules.items()]))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix="", remove_duplicate=True):
        """(name, Parameter) pairs; a shared parameter is yielded once unless remove_duplicate=False."""
        seen = set()
        for mname, m in self.named_modules(prefix, remove_duplicate):
            for name, p in m._parameters.items():
                if remove_duplicate:
                    if id(p) in seen:
                        continue
                    seen.add(id(p))
                yield (f"{mname}.{name}" if mname else name), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def _named_states(self, prefix=""):
        for name, get in self._states.items():
            yield (f"{prefix}.{name}" if prefix else name), get
        for cname, child in self._modules.items():
            yield from child._named_states(f"{prefix}.{cname}" if prefix else cname)

    # --- flat buffers ----------------------------------------------------------------------------

    def flatten_parameters_(self):
        """Puts all parameters of this module into one flat buffer (idempotent); returns the buffer."""
        return self._flatten(list(self.parameters()))

    def _flatten(self, params):
        """flatten_parameters_ on this module's `params` (list(self.parameters()), walked once by the caller)."""
        if not params:
            return None
        buf = shared_buffer(params) or repack(params)
        _claim_parameters(self, params)
        return buf

    def flat_parameters(self):
        """All parameter values as one 1-D array (a view: writes change the model)."""
        buf = self.flatten_parameters_()
        return buf.params if buf is not None else np.zeros(0, np.float32)

    def flat_grad(self):
        """All parameter gradients as one 1-D array (a view)."""
        buf = self.flatten_parameters_()
        return buf.grads if buf is not None else np.zeros(0, np.float32)

    def _rebind(self):
        """Called when this module's parameters move to another buffer (C++ layers re-point)."""

    # --- modes and gradients -------------------------------------------------------------------

    def train(self, mode=True):
        mode = _v.check_bool(mode, f"{type(self).__name__}.train", "mode")
        for m in self.modules():
            m.__dict__["_training"] = bool(mode)
            m._on_mode_change()
        return self

    def eval(self):
        return self.train(False)

    def _on_mode_change(self):
        pass

    def zero_grad(self, set_to_none=True):
        """Zeros the gradients of every parameter.

        The gradients are views into the model's flat gradient buffer, which the C++ layers
        accumulate into, so they are never None: ``set_to_none`` (PyTorch's argument) is accepted
        and both values zero them (PyTorch's None reads as zeros wherever an optimizer reads it).
        """
        _v.check_bool(set_to_none, f"{type(self).__name__}.zero_grad", "set_to_none")
        params = list(self.parameters())
        buf = shared_buffer(params)
        if buf is not None:
            buf.grads.fill(0)
        else:
            for p in params:
                p.grad[...] = 0

    def requires_grad_(self, requires_grad=True):
        """Freezes (False) or unfreezes every parameter of this module."""
        requires_grad = _v.check_bool(requires_grad, "requires_grad_", "requires_grad")
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        for m in self.modules():
            m._rebind()
        return self

    def to(self, dtype):
        """Converts every parameter and running statistic to `dtype` (float32 or float64), in place."""
        for child in self.children():
            child.to(dtype)
        own = list(self._parameters.values())  # a module written in Python owns Parameter(array)s
        if own and any(p.dtype != np.dtype(dtype) for p in own):
            repack(own, dtype)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # --- computation -----------------------------------------------------------------------------

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def backward(self, grad_out):
        raise NotImplementedError(f"{type(self).__name__} must implement backward(grad_out)")

    def __call__(self, x):
        return self.forward(x)

    def _forward_in_mode(self, x, training):
        """forward(x) with this module and everything it calls in `training` mode in this thread
        only (evaluate and predict of a model written in Python); the modules' own modes stay."""
        before = getattr(_imposed, "mode", None)
        _imposed.mode = bool(training)
        try:
            return self.forward(x)
        finally:
            _imposed.mode = before

    # --- training (fastnn.train; the epoch loop runs in C++) ------------------------------------

    def fit(self, X, y, **kwargs):
        """``fastnn.fit(self, X, y, ...)``: see :func:`fastnn.train.fit`."""
        from ..train import fit

        return fit(self, X, y, **kwargs)

    def evaluate(self, X, y, **kwargs):
        from ..train import evaluate

        return evaluate(self, X, y, **kwargs)

    def predict(self, X, **kwargs):
        from ..train import predict

        return predict(self, X, **kwargs)

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self):
        """Parameters and running statistics by PyTorch's names, as copies."""
        out = OrderedDict()
        # per module: parameters, then running statistics; a shared module under each of its names, as in PyTorch
        for prefix, m in self.named_modules(remove_duplicate=False):
            join = (lambda n: f"{prefix}.{n}") if prefix else (lambda n: n)
            for name, p in m._parameters.items():
                out[join(name)] = p.data.copy()
            for name, get in m._states.items():
                out[join(name)] = np.array(get(), copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copies values in (shapes must match; dtypes are converted to the model's); returns
        ``IncompatibleKeys(missing_keys, unexpected_keys)`` as PyTorch does.

        strict: missing or unexpected keys raise KeyError listing them; strict=False loads the keys
        both have and leaves the rest as it is (e.g. lower layers from another model). Values may be
        arrays or torch tensors (a torch model's state_dict()). A key both have with another shape
        is a ValueError either way (PyTorch's "size mismatch"): leave it out of the dict.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: state_dict must be a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        targets = {name: p.data for name, p in self.named_parameters(remove_duplicate=False)}
        targets.update({name: get() for name, get in self._named_states()})
        # PyTorch's BatchNorm also saves num_batches_tracked (used only with momentum=None).
        state_dict = {k: v for k, v in state_dict.items() if not k.split(".")[-1] == "num_batches_tracked"}
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        values = {}
        for name, value in state_dict.items():
            if name not in targets:
                continue
            dst = targets[name]
            value = as_real(value, dst.dtype, f"load_state_dict: {name!r}")  # checked after the cast, as fit's data
            if value.shape != dst.shape:
                hint = "" if strict else f" (strict=False skips missing keys, not other shapes: leave {name!r} out)"
                raise ValueError(f"load_state_dict: {name!r} has shape {value.shape}, the model expects {dst.shape}{hint}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"load_state_dict: {name!r} contains NaN or infinity "
                                 f"(or values too large for {dst.dtype})")
            if name.split(".")[-1] == "running_var" and (value < 0).any():
                i = int(np.argmax(value < 0))
                raise ValueError(f"load_state_dict: {name!r} has a negative variance ({name}[{i}] = {value[i]})")
            values[name] = value
        for name, value in values.items():  # all checked first: a bad dict changes nothing
            targets[name][...] = value
        return IncompatibleKeys(missing, unexpected)

    # --- description -------------------------------------------------------------------------

    def count_params(self, trainable=None):
        """Number of parameter values (shared ones once); trainable=True/False: only those that
        train / only the frozen ones."""
        if trainable is not None:
            trainable = _v.check_bool(trainable, "count_params", "trainable")
        from .summary import count_params

        return count_params(self, trainable)

    def summary(self, input_shape=None, print_fn=print):
        """Prints a Keras-like table: layers, output shapes for one sample's `input_shape` (no
        batch), parameter counts, trainable vs frozen (see :func:`fastnn.nn.summary.summary`)."""
        from .summary import summary

        return summary(self, input_shape, print_fn)

    # --- copying -------------------------------------------------------------------------------

    def __reduce__(self):
        """pickle and copy.deepcopy through fastnn's model format (``fastnn.io.to_bytes``: the
        architecture, weights, modes and frozen flags, no code), so a copy is independent and exact.
        Only built-in layers and containers can be described that way (TypeError otherwise)."""
        from .. import io  # nn does not import io at module level: io builds on nn

        return (io.from_bytes, (io.to_bytes(self), False))

    # --- display -------------------------------------------------------------------------------

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_repr = repr(child).replace("\n", "\n  ")
                lines.append(f"\n  ({name}): {child_repr}")
            lines.append("\n")
        return "".join(lines) + ")"
