"""Parameters are named views into one flat buffer per model (and gradients into a second one).

Optimizers update the whole model in one fused C++ pass over the flat buffers; L-BFGS, CG and
Newton see the model as the vector it is. A ``Parameter`` is only a window (offset, shape) into its
``FlatBuffer``; ``data`` and ``grad`` are NumPy views of the same memory the C++ layers use.
"""

import threading
import weakref

import numpy as np

from .. import _validate as _v

# Segment flags (the third column of FlatBuffer.segments()), shared with the C++ optimizers.
TRAINABLE = 1  # requires_grad: receives gradients and updates
DECAY = 2  # weight decay / L1 / max-norm apply (every parameter unless created with weight_decay=False)

# Counts every move of parameters to another buffer (repack): an optimizer compares it with the
# value at its last check, so that noticing a repack costs one comparison per step.
_moves = 0
_moves_lock = threading.Lock()  # two threads repacking must not lose a count


def moves():
    """How many times parameters have moved to another FlatBuffer in this process (see repack)."""
    return _moves


class FlatBuffer:
    """The flat parameter and gradient storage of one model."""

    def __init__(self, size, dtype=np.float32):
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"FlatBuffer: dtype must be float32 or float64, got {dtype}")
        self.dtype = dtype
        self.params = np.zeros(size, dtype=dtype)
        self.grads = np.zeros(size, dtype=dtype)
        self.parameters = []  # in offset order

    def segments(self, parameters=None):
        """(k, 3) int64 array of [offset, size, flags] for `parameters` (default: all), for the C++ optimizers."""
        ps = self.parameters if parameters is None else parameters
        return np.array([[p.offset, p.size, p.flags] for p in ps], dtype=np.int64).reshape(-1, 3)


class Parameter:
    """A named view (offset, shape) into a FlatBuffer.

    ``Parameter(array)`` makes a new one holding a copy of `array` (float32 or float64), for
    modules written in Python: assigned as a module attribute (``self.scale = Parameter(...)``),
    it is one of the module's parameters(), moves into the model's flat buffer with the others,
    and is updated by the optimizers. The module's backward adds its gradient to ``p.grad``.

    Attributes:
        data: NumPy view of the values (writes go to the model).
        grad: NumPy view of the accumulated gradient.
        requires_grad: False freezes it (no gradient, no update).
        weight_decay: whether a group's weight decay / L1 / max-norm apply to it. True for every
            parameter of the built-in layers (torch decays every parameter of a group; use
            ``optim.param_groups`` to exclude biases and normalization parameters); False is an
            explicit opt-out of this one parameter.
    """

    def __init__(self, buffer, offset=None, shape=None, requires_grad=True, weight_decay=True, name="", owner=None):
        if not isinstance(buffer, FlatBuffer):  # Parameter(array): a buffer of its own
            if offset is not None or shape is not None:
                raise TypeError("Parameter(array) takes no offset or shape")
            value = np.asarray(buffer)
            if value.dtype not in (np.float32, np.float64):
                raise TypeError(f"Parameter: the array must be float32 or float64, got {value.dtype}")
            buffer = FlatBuffer(value.size, value.dtype)
            buffer.params[...] = value.reshape(-1)
            buffer.parameters.append(self)
            offset, shape = 0, value.shape
        self.buffer = buffer
        self.owner = owner  # the module whose C++ layer reads this memory; told when it moves (repack)
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        if self.offset < 0 or self.offset + self.size > buffer.params.size:
            raise ValueError(f"Parameter {name!r}: [{offset}, {offset + self.size}) is outside the buffer")
        self.requires_grad = _v.check_bool(requires_grad, "Parameter", "requires_grad")
        self.weight_decay = _v.check_bool(weight_decay, "Parameter", "weight_decay")
        self.name = name
        self._model = None  # weakref to the model it belongs to (see model), set by flatten_parameters_

    @property
    def model(self):
        """The outermost module whose flat buffer this parameter was put in (None if none is alive)."""
        ref = self.__dict__.get("_model")
        return ref() if ref is not None else None

    @model.setter
    def model(self, module):
        self._model = weakref.ref(module)

    def __reduce__(self):
        """pickle / deepcopy: the parameter of the same name in a copy of its model (pickled once
        with the model when both are: optimizers and their models stay together), or of the module
        that owns it, else a Parameter holding a copy of the values."""
        for holder in (self.model, self.owner):
            if holder is None:
                continue
            for name, p in holder.named_parameters():
                if p is self:
                    return (_parameter_named, (holder, name))
        return (_standalone_parameter, (self.numpy(), self.requires_grad, self.weight_decay, self.name))

    @property
    def data(self):
        return self.buffer.params[self.offset : self.offset + self.size].reshape(self.shape)

    @data.setter
    def data(self, value):
        value = as_real(value, self.dtype, f"Parameter {self.name!r}")
        if value.shape != self.shape:
            raise ValueError(f"Parameter {self.name!r}: expected shape {self.shape}, got {value.shape}")
        self.data[...] = value

    @property
    def grad(self):
        return self.buffer.grads[self.offset : self.offset + self.size].reshape(self.shape)

    @property
    def flags(self):
        return (TRAINABLE if self.requires_grad else 0) | (DECAY if self.weight_decay else 0)

    @property
    def dtype(self):
        return self.buffer.dtype

    def numpy(self):
        """A copy of the values."""
        return self.data.copy()

    def __array__(self, dtype=None, copy=None):
        """np.asarray(p): the values (a view unless a copy or another dtype is asked for)."""
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    # --- reading it as the array it views: p + 1, p[0], np.sum(p), p.mean() give NumPy arrays ----

    def numel(self):
        """Number of values (PyTorch's numel; also ``p.size``)."""
        return self.size

    @property
    def ndim(self):
        return len(self.shape)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d Parameter")
        return self.shape[0]

    def __getitem__(self, key):
        return self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __float__(self):
        return float(self.data)

    # NumPy reads a Parameter as its values: ufuncs (np.exp(p), p * 2, out=p writes into the
    # model) and array functions (np.sum, np.concatenate, ...) get the NumPy view in its place.
    __array_priority__ = 1000

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = tuple(_values(x) for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_values(x) for x in kwargs["out"])
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return func(*_values(args), **_values(kwargs))

    # == and != stay identity (a Parameter is found in lists and sets by identity, as a module's
    # attribute); compare values with np.array_equal(p, q) or p.data == q.data.
    __hash__ = object.__hash__

    _READ_ATTRIBUTES = frozenset((
        "T", "all", "any", "argmax", "argmin", "astype", "clip", "copy", "cumsum", "dot", "flatten", "itemsize",
        "max", "mean", "min", "nbytes", "prod", "ravel", "reshape", "round", "std", "strides", "sum", "tolist",
        "transpose", "var", "item"))

    def __getattr__(self, name):  # only called for names a Parameter does not have
        if name in Parameter._READ_ATTRIBUTES:
            return getattr(self.data, name)
        raise AttributeError(f"'Parameter' object has no attribute {name!r}")

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.shape}, dtype={self.dtype}, requires_grad={self.requires_grad})"


def _binary(op):
    return lambda self, other: op(self.data, _values(other))


def _reflected(op):
    return lambda self, other: op(_values(other), self.data)


import operator as _op  # noqa: E402

for _name, _fn in [("add", _op.add), ("sub", _op.sub), ("mul", _op.mul), ("truediv", _op.truediv),
                   ("floordiv", _op.floordiv), ("mod", _op.mod), ("pow", _op.pow), ("matmul", _op.matmul)]:
    setattr(Parameter, f"__{_name}__", _binary(_fn))
    setattr(Parameter, f"__r{_name}__", _reflected(_fn))
for _name, _fn in [("lt", _op.lt), ("le", _op.le), ("gt", _op.gt), ("ge", _op.ge)]:
    setattr(Parameter, f"__{_name}__", _binary(_fn))
Parameter.__neg__ = lambda self: -self.data
Parameter.__pos__ = lambda self: +self.data
Parameter.__abs__ = lambda self: abs(self.data)


def _values(x):
    """x with every Parameter (also inside lists, tuples and dicts) replaced by its values."""
    if isinstance(x, Parameter):
        return x.data
    if isinstance(x, (list, tuple)):
        return type(x)(_values(v) for v in x)
    if isinstance(x, dict):
        return {k: _values(v) for k, v in x.items()}
    return x


def as_real(value, dtype, what):
    """`value` as an array of `dtype`, refusing what the cast would silently lose: an imaginary
    part, or something that is not a number (strings, objects)."""
    value = np.asarray(value)
    if value.dtype.kind not in "fiub":
        raise TypeError(f"{what}: values must be real numbers, got dtype {value.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as inf; callers check finiteness
        return value.astype(dtype, copy=False)


def pack(shapes, dtype=np.float32, names=None, decay=None):
    """A FlatBuffer holding parameters of the given shapes back to back; returns (buffer, [Parameter])."""
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    buf = FlatBuffer(sum(sizes), dtype)
    offset = 0
    for i, (shape, size) in enumerate(zip(shapes, sizes)):
        p = Parameter(buf, offset, shape, weight_decay=True if decay is None else decay[i],
                      name=names[i] if names else str(i))
        buf.parameters.append(p)
        offset += size
    return buf, buf.parameters


def repack(parameters, dtype=None):
    """Moves `parameters` into one new FlatBuffer, back to back in the given order.

    Values (and gradients) are copied, converted to `dtype` when given (``model.double()``);
    without `dtype` all parameters must have the same one. Every Parameter object stays valid (its
    buffer and offset change; optimizers holding it follow at their next step), and each owner
    module's ``_rebind()`` is called so its C++ layer reads the new memory. Returns the buffer.
    NumPy views taken earlier from ``p.data`` keep pointing at the old memory.
    """
    global _moves
    parameters = list(parameters)
    if not parameters:
        raise ValueError("repack: no parameters")
    if dtype is None:
        dtype = parameters[0].dtype
        if any(p.dtype != dtype for p in parameters):
            raise TypeError(f"repack: parameters have different dtypes {sorted({str(p.dtype) for p in parameters})}")
    buf = FlatBuffer(sum(p.size for p in parameters), dtype)
    offset = 0
    for p in parameters:
        buf.params[offset : offset + p.size] = p.data.reshape(-1)
        buf.grads[offset : offset + p.size] = p.grad.reshape(-1)
        p.buffer, p.offset = buf, offset
        buf.parameters.append(p)
        offset += p.size
    with _moves_lock:
        _moves += 1
    owners = {id(p.owner): p.owner for p in parameters if p.owner is not None}
    for owner in owners.values():
        owner._rebind()
    return buf


def shared_buffer(parameters):
    """The FlatBuffer that holds exactly `parameters` back to back, or None."""
    parameters = list(parameters)
    if not parameters:
        return None
    buf = parameters[0].buffer
    offset = 0
    for p in parameters:
        if p.buffer is not buf or p.offset != offset:
            return None
        offset += p.size
    return buf if offset == buf.params.size else None


def _parameter_named(module, name):
    """The parameter `name` of `module` (unpickling a Parameter)."""
    return dict(module.named_parameters())[name]


def _standalone_parameter(values, requires_grad, weight_decay, name):
    return Parameter(values, requires_grad=requires_grad, weight_decay=weight_decay, name=name)
