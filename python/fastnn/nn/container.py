"""Containers: modules made of named children that run inside one C++ call.

``Container`` is the base of every container (Sequential, Residual, Concat, DenseBlock, ...): it
checks the children, gives the model one dtype and one flat parameter buffer (parameters in the
order the children are registered, which is the order they run), hands the children's C++ layers
to the C++ container, and converts everything in ``to(dtype)``. A new container calls
``Container.__init__(self, named_children, build)`` with build(dtype, layers) -> its C++ object
(``layers``: the children's C++ layers, in order); when the user composes its children (``_composed``: they are
not rebuilt from its constructor arguments), it also defines ``_from_children`` for load and
fold_batchnorm (see Residual, Concat); a container that builds its children from its arguments
(DenseBlock) sets ``_composed = False`` and ``_config_keys``, and is rebuilt as a layer is.
"""

import weakref
from collections import OrderedDict

import numpy as np

from ._layer_module import LayerModule, dtype_suffix, make_layer
from .._config import _C
from .module import Module, check_child


def cpp_layer(module, dtype, owner=None):
    """The C++ layer of a built-in module, or a trampoline around a module written in Python."""
    if isinstance(module, LayerModule):
        if module.dtype != np.dtype(dtype):
            raise TypeError(f"{type(owner).__name__}: {type(module).__name__} is {module.dtype}, "
                            f"the others are {np.dtype(dtype)}")
        return module._layer
    return getattr(_C, f"PythonLayer_{dtype_suffix(dtype)}")(module)


def _is_free_leaf(m):
    """A built-in module without parameters, state or children (ReLU, Dropout, ...): it can be copied
    (a BatchNorm(affine=False) has no parameters but running statistics: a copy would not share them)."""
    return isinstance(m, LayerModule) and not m._modules and not m._states and not any(True for _ in m.parameters())


def _runs_as_is(m):
    """The modules whose own C++ layer runs when `m` runs: all of them, except the parameter-free
    leaves for which a container inside `m` made a copy (they appear in several places)."""
    inside = list(m.modules())
    containers = {id(c) for c in inside if isinstance(c, LayerModule) and c._modules}
    if not isinstance(m, LayerModule):  # a Python module calls its submodules' own layers
        return inside
    return [s for s in inside if not _is_free_leaf(s) or s is m or s.__dict__.get("_claims", set()) & containers]


def _cpp_children(owner, named, dtype):
    """The C++ layers of the children, in order. A C++ layer keeps its input and output buffers
    between forward and backward, so it must not run in two places of one model. A parameter-free
    module (the same ReLU object in several places, common in PyTorch code) runs its own layer in
    the first container that claims it and a copy everywhere else; sharing a module with
    parameters (weight sharing), a container or a Python module between places is refused."""
    seen = {}  # id(module) -> the child whose subtree runs that module's own layer
    layers = []
    copies = {}
    for name, m in named:
        if _is_free_leaf(m):
            claims = m.__dict__.setdefault("_claims", set())
            if id(m) in seen or claims - {id(owner)}:
                layers.append(m._factory(np.dtype(dtype)))
                copies.setdefault(id(m), (m, []))[1].append(layers[-1])
                continue
            claims.add(id(owner))
        inside = _runs_as_is(m)
        again = next((s for s in inside if id(s) in seen), None)
        if again is not None:
            raise ValueError(f"{type(owner).__name__}: {type(again).__name__} module used at {seen[id(again)]!r} is used again in "
                             f"child {name!r}; sharing a module with parameters (or a Python module or a container) "
                             "between places is not supported: create separate modules")
        layers.append(cpp_layer(m, dtype, owner))
        for s in inside:
            seen.setdefault(id(s), name)
    for m, extra in copies.values():
        m._set_copies(owner, extra)  # they follow the module's train/eval mode with its own layer
    return layers


def _model_dtype(modules, owner="Sequential"):
    """The dtype of the modules that have parameters (parameter-free ones follow it)."""
    dtypes = {p.dtype for m in modules for p in m.parameters()}
    if len(dtypes) > 1:
        raise TypeError(f"{owner}: modules have different dtypes {sorted(str(d) for d in dtypes)}")
    if dtypes:
        return dtypes.pop()
    first = next((m.dtype for m in modules if isinstance(m, LayerModule)), np.dtype(np.float32))
    return np.dtype(first)


class Container(LayerModule):
    """Base of the containers: named children whose C++ layers one C++ container runs.

    Args:
        named: [(name, module)] in the order they run.
        build: (dtype, layers) -> the C++ container over the children's C++ layers.
        dtype: the model's dtype when no child has parameters (default: the children's).
    """

    _config_keys = ()
    _composed = True  # a subclass that builds its own children from its arguments sets False
    _open = False  # new children may be added after construction (Sequential and Concat: "0", "1", ...)

    def __init__(self, named, build, dtype=None):
        owner = type(self).__name__
        for name, m in named:
            if not isinstance(m, Module):
                raise TypeError(f"{owner}: child {name!r} is a {type(m).__name__}, not a fastnn.nn.Module")
        modules = [m for _, m in named]
        has_params = any(True for m in modules for _ in m.parameters())
        dtype = np.dtype(dtype) if dtype is not None and not has_params else _model_dtype(modules, owner)
        for m in modules:
            if isinstance(m, LayerModule) and not any(True for _ in m.parameters()):
                m.to(dtype)
        super().__init__(lambda dt: build(dt, _cpp_children(self, self._modules.items(), dt)),
                         dtype, own_params=False, children=named)
        self.flatten_parameters_()
        for m in modules:  # told when this container's C++ layer changes, to rebuild theirs (_rebuild)
            m.__dict__.setdefault("_parents", weakref.WeakSet()).add(self)

    def __setattr__(self, name, value):
        if isinstance(value, Module) and "_layer" in self.__dict__:
            self.add_module(name, value)  # after construction: the C++ container is rebuilt
        else:
            super().__setattr__(name, value)

    def add_module(self, name, module):
        """Adds (Sequential, Concat) or replaces a child and rebuilds the C++ container around the
        children (and the containers around this one), so that the new child runs."""
        if "_layer" not in self.__dict__:  # during construction
            return super().add_module(name, module)
        check_child(self, name, module)
        owner = type(self).__name__
        if not self._composed:
            raise TypeError(f"{owner}.add_module: its children are built from its arguments; make a new {owner}")
        if name not in self._modules and not self._open:
            raise TypeError(f"{owner}.add_module: {owner} has the children {list(self._modules)} and takes no "
                            f"other child ({name!r}); build a new {owner}")
        dtypes = {p.dtype for p in module.parameters()}
        if dtypes and dtypes != {self.dtype}:
            raise TypeError(f"{owner}.add_module: {name!r} is {sorted(str(d) for d in dtypes)}, the model is "
                            f"{self.dtype}; convert it with .to(np.{self.dtype})")
        if isinstance(module, LayerModule) and not dtypes:
            module.to(self.dtype)
        old = self._modules.get(name)
        Module.__setattr__(self, name, module)
        try:
            self._rebuild()
        except BaseException:
            if old is None:
                del self._modules[name]
                object.__delattr__(self, name)
            else:
                Module.__setattr__(self, name, old)
            self._rebuild()
            raise
        module.__dict__.setdefault("_parents", weakref.WeakSet()).add(self)

    def _rebuild(self):
        """A new C++ container over the children's current C++ layers (a child was added or
        replaced, here or inside), then the same for every container around this one."""
        mode = self._layer.mode
        object.__setattr__(self, "_layer", self._factory(self.dtype))
        self._layer.mode = mode
        object.__setattr__(self, "_last_input", None)
        self.flatten_parameters_()
        for parent in list(self.__dict__.get("_parents", ())):
            if any(m is self for m in parent._modules.values()):
                parent._rebuild()

    @classmethod
    def _from_children(cls, config, named, dtype):
        """The container with these (name, module) children and constructor arguments `config`
        (load and fold_batchnorm rebuild a _composed container this way)."""
        raise NotImplementedError(f"{cls.__name__} must define _from_children")

    def to(self, dtype):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        for m in self._modules.values():
            m.to(dtype)
        mode = self._layer.mode
        object.__setattr__(self, "_layer", self._factory(dtype))
        self._layer.mode = mode
        object.__setattr__(self, "dtype", dtype)
        self.flatten_parameters_()
        return self


class Sequential(Container):
    """A chain of modules; ``Sequential(a, b, c)(x) == c(b(a(x)))``, children named "0", "1", ...

    All parameters of the model live in one flat buffer (``flat_parameters()``), and forward and
    backward run in one C++ call with the GIL released.
    """

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], (OrderedDict, dict)):
            named = list(modules[0].items())
        else:
            named = [(str(i), m) for i, m in enumerate(modules)]
        super().__init__(named, lambda dt, layers: make_layer("Sequential", dt, layers))

    _open = True

    @classmethod
    def _from_children(cls, config, named, dtype):
        return cls(OrderedDict(named))

    def append(self, module):
        """Adds `module` at the end (child name ``str(len(self))``, or the next number not taken: a
        slice ``model[2:]`` keeps the names "2", "3", ...); returns self (PyTorch's append)."""
        k = len(self)
        while str(k) in self._modules:
            k += 1
        self.add_module(str(k), module)
        return self

    def extend(self, modules):
        """Appends each of `modules` in order; returns self."""
        for m in modules:
            self.append(m)
        return self

    @property
    def execution_plan(self):
        """The layers as the C++ loop runs them: fused pairs and triples show as one entry,
        e.g. ``['Linear', 'BatchNorm1d+relu+dropout', 'Linear+relu', 'Linear']``."""
        return list(self._layer.execution_plan)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        """Child i, or for a slice a new Sequential of those children that keeps their names (as
        PyTorch's), so that ``model[2:].state_dict()`` has the keys of ``model.state_dict()``."""
        if isinstance(i, slice):
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return list(self._modules.values())[i]

    def __setitem__(self, i, module):
        """Replaces child i (``model[-1] = nn.Linear(128, 5)``: a new head), keeping its name, as
        PyTorch's Sequential; the C++ container (and those around it) is rebuilt."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"Sequential indices must be integers, got {type(i).__name__} (slices are not assignable: "
                            "build a new Sequential, e.g. nn.Sequential(*model[:k], new_top))")
        names = list(self._modules)
        if not -len(names) <= i < len(names):
            raise IndexError(f"Sequential index {i} is out of range for {len(names)} children")
        self.add_module(names[int(i)], module)

    def __delitem__(self, i):
        """Removes child i (or a slice of them) and numbers the rest "0", "1", ... again, as
        PyTorch's ``del model[i]`` does; the C++ container (and those around it) is rebuilt."""
        if not isinstance(i, slice):
            self._check_index(i, "Sequential.__delitem__")
        modules = list(self._modules.values())
        del modules[i]
        self._renumber(modules)

    def insert(self, index, module):
        """Inserts `module` before child `index` (PyTorch's insert; index len(self) appends); the
        children are numbered "0", "1", ... again. Returns self."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(self) <= index <= len(self):
            raise IndexError(f"Sequential.insert: index must be an integer in [{-len(self)}, {len(self)}], got {index!r}")
        index = int(index) + len(self) if index < 0 else int(index)  # -1: before the last child, as list.insert
        self.append(module)  # the checks and conversions of add_module
        modules = list(self._modules.values())
        modules.insert(index, modules.pop())
        self._renumber(modules)
        return self

    def pop(self, i=-1):
        """Removes child i and returns it (PyTorch's pop)."""
        self._check_index(i, "Sequential.pop")
        module = self[i]
        del self[i]
        return module

    def _check_index(self, i, where):
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{where}: indices must be integers or slices, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"{where}: index {i} is out of range for {len(self)} children")

    def _renumber(self, modules):
        """The children become `modules`, named "0", "1", ...; the C++ container is rebuilt (the
        old children come back if that fails)."""
        old = list(self._modules.items())

        def assign(named):
            for name in list(self._modules):
                object.__delattr__(self, name)
            self._modules.clear()
            for name, m in named:
                Module.__setattr__(self, name, m)

        assign([(str(k), m) for k, m in enumerate(modules)])
        try:
            self._rebuild()
        except BaseException:
            assign(old)
            self._rebuild()
            raise
        for _, m in old:  # a removed child no longer tells this container of its changes
            if not any(m is c for c in modules):
                m.__dict__.get("_parents", weakref.WeakSet()).discard(self)
                m.__dict__.get("_claims", set()).discard(id(self))

    def __iter__(self):
        return iter(self._modules.values())
