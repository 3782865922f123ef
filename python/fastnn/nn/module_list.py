"""ModuleList: submodules held in a list by a module written in Python (PyTorch's nn.ModuleList)."""

import operator

from .module import Module, check_child


class ModuleList(Module):
    """A list of modules, registered as children "0", "1", ... so that their parameters,
    state_dict entries, modes and dtype conversions belong to the module that holds the list.

    It is not run itself (no forward): a Python-written module's forward iterates over it. Indexing
    with a slice gives a new ModuleList of the same modules.

        class Tower(nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, i):
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"ModuleList index {i} is out of range for {n} modules")
        return i % n if n else i

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return self._modules[str(self._index(i))]

    def __setitem__(self, i, module):
        self.add_module(str(self._index(i)), module)

    def __delitem__(self, i):
        mods = list(self._modules.values())
        del mods[i if isinstance(i, slice) else self._index(i)]
        self._reset(mods)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def __iadd__(self, modules):
        return self.extend(modules)

    def append(self, module):
        """Adds `module` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        """Appends each of `modules`; returns self."""
        if isinstance(modules, Module):
            raise TypeError(f"ModuleList.extend takes an iterable of modules, got a {type(modules).__name__}")
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index, module):
        """Inserts `module` before `index`."""
        check_child(self, str(len(self)), module)
        mods = list(self._modules.values())
        mods.insert(operator.index(index), module)
        self._reset(mods)

    def _reset(self, mods):
        for name in list(self._modules):
            del self._modules[name]
            object.__delattr__(self, name)
        for i, m in enumerate(mods):
            setattr(self, str(i), m)

    def forward(self, x):
        raise NotImplementedError("ModuleList is not a model: iterate over it in your module's forward "
                                  "(or use nn.Sequential to chain the modules)")

    def backward(self, grad_out):
        raise NotImplementedError("ModuleList is not a model: iterate over it in your module's backward")
