"""The optimizer base class: parameter groups, flat state, zero_grad, state_dict.

A model's parameters are views into one flat buffer (:mod:`fastnn.nn.parameter`), so an
optimizer's state is a few flat arrays of the same length as ``FlatBuffer.params`` (Adam's
``exp_avg`` and ``exp_avg_sq``, ...), and one step is one fused C++ pass over the buffers per
parameter group (``fastnn._C.<name>_step``), skipping frozen parameters. As in torch, a group's
weight decay (and fastnn's L1 and max-norm) applies to every parameter of the group;
:func:`param_groups` makes the usual groups that leave biases and normalization parameters out.
"""

import math

import numpy as np

from .. import _validate as _v
from ..nn import parameter as _parameter
from .._config import _C
from ..nn.parameter import TRAINABLE, Parameter, repack

__all__ = ["Optimizer", "param_groups", "segment_table"]


def segment_table(parameters):
    """(k, 4) int64 table [offset, size, flags, row_len] of `parameters` for the C++ kernels.

    ``flags`` are TRAINABLE=1 | DECAY=2 (see ``FlatBuffer.segments``); ``row_len`` is
    ``prod(shape[1:])`` for ndim >= 2 (one unit's incoming weights, the rows max-norm constrains)
    and 0 otherwise.
    """
    rows = [(p.offset, p.size, p.flags, math.prod(p.shape[1:]) if len(p.shape) >= 2 else 0) for p in parameters]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def param_groups(model, weight_decay, no_decay=("bias", "norm")):
    """Two torch-style parameter groups: decayed parameters, and the others with weight_decay 0.

    A parameter goes to the no-decay group when one of the `no_decay` strings occurs
    (case-insensitively) in its qualified name (``"0.bias"``, ``"body.norm1.weight"``) or in the
    class name of the module that holds it (``BatchNorm1d`` contains ``"norm"``), so biases and
    BatchNorm parameters are excluded by default, also in a ``Sequential`` whose children are
    named ``"0"``, ``"1"``, ... Empty groups are left out.

        opt = optim.AdamW(optim.param_groups(model, weight_decay=1e-2), lr=1e-3)

    Args:
        model: a fastnn.nn.Module.
        weight_decay: the decay of the first group (>= 0).
        no_decay: substrings naming the parameters not to decay (a string or a sequence of them).
    Returns:
        ``[{"params": [...], "weight_decay": weight_decay}, {"params": [...], "weight_decay": 0.0}]``.
    """
    from ..nn.module import Module

    if not isinstance(model, Module):
        raise TypeError(f"param_groups: model must be a fastnn.nn.Module, got {type(model).__name__}")
    weight_decay = _v.check_real(weight_decay, "param_groups", "weight_decay", 0)
    if isinstance(no_decay, str):
        no_decay = (no_decay,)
    no_decay = tuple(no_decay)
    if not all(isinstance(word, str) and word for word in no_decay):
        raise TypeError(f"param_groups: no_decay must be non-empty strings, got {no_decay!r}")
    words = [word.lower() for word in no_decay]
    holder = {id(p): type(m).__name__.lower() for _, m in model.named_modules() for p in m._parameters.values()}
    decay, keep = [], []
    for name, p in model.named_parameters():
        where = (name.lower(), holder.get(id(p), ""))
        (keep if any(word in text for word in words for text in where) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _gather_into_one_buffer(groups):
    """Moves the parameters into one flat buffer when they come from several (a model written in
    Python whose children were built separately), so that one fused pass updates them all."""
    for g in groups:
        if isinstance(g.get("params"), (list, tuple)) or g.get("params") is None or isinstance(g["params"], Parameter):
            continue
        if not isinstance(g["params"], (set, frozenset)):
            g["params"] = list(g["params"])  # generators (model.parameters()) are read once
    params = [p for g in groups for p in ([g["params"]] if isinstance(g.get("params"), Parameter) else g.get("params") or [])]
    if all(isinstance(p, Parameter) for p in params) and len({id(p.buffer) for p in params}) > 1:
        repack(list({id(p): p for p in params}.values()))


_FLAGS = ("amsgrad", "maximize", "nesterov", "centered", "decoupled_weight_decay")  # True/False hyperparameters


def _check_range(value, name, low=0.0, high=math.inf, high_inclusive=False, low_inclusive=True):
    if not _v.is_real(value):  # a bool, a string, a complex number
        raise ValueError(f"Invalid {name}: {value!r} (must be a real number)")
    ok_low = low <= value if low_inclusive else low < value
    ok_high = value <= high if high_inclusive else value < high
    if not (ok_low and ok_high):  # also rejects NaN
        raise ValueError(f"Invalid {name}: {value}")


class Optimizer:
    """Base class of the first-order optimizers (PyTorch's ``torch.optim.Optimizer`` interface).

    Args:
        params: an iterable of :class:`~fastnn.nn.parameter.Parameter` (all views into the same
            FlatBuffer, i.e. one model), or an iterable of dicts (parameter groups) each holding
            ``"params"`` and optionally per-group hyperparameters overriding `defaults`.
        defaults: the default hyperparameters of every group.

    Attributes:
        param_groups: list of dicts with ``"params"`` and the hyperparameters (``"lr"``, ...);
            schedulers and users may change them between steps.
        state: dict of NumPy arrays: flat arrays of the buffer's length (allocated at the first
            step that needs them) and per-group counters (``"step"``, shape ``(len(param_groups),)``).
        buffer: the FlatBuffer the parameters live in. When they move to another one (a repack:
            ``model.double()``, a new ``Sequential`` around the model, a slice ``model[2:]``), the
            optimizer follows them at its next use: the flat state of each parameter moves with
            it, converted to the new dtype, as a PyTorch optimizer stays valid.

    Subclasses list their state in ``_flat_state`` / ``_group_state``, validate a group's
    hyperparameters in ``_check_group`` and implement ``_step_group``.
    """

    _flat_state = ()  # names of the state arrays parallel to FlatBuffer.params
    _group_state = ("step",)  # names of the per-group int64 counters
    _required_after_step = ()  # flat state that must exist once a group has stepped
    _nonnegative_state = ()  # flat state that is a sum or average of squares (a negative entry is corrupt)

    def __init__(self, params, defaults):
        if isinstance(params, (Parameter, dict, np.ndarray)):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Parameters or dicts, "
                f"but got {type(params).__name__}"
            )
        self.defaults = dict(defaults)
        self._check_group(self.defaults)
        self.param_groups = []
        self.state = {name: np.zeros(0, dtype=np.int64) for name in self._group_state}
        self._buffer = None
        self._offsets = []  # each parameter's offset (in group order) when the state was laid out
        self._moves_seen = _parameter.moves()
        self._segments = []  # per group: (flags signature, segment table, any trainable)
        self._grad_ranges = []  # merged [start, end) ranges of every parameter, for zero_grad
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        _gather_into_one_buffer(groups)
        for group in groups:
            self.add_param_group(group)
        if self.buffer is None:
            raise ValueError("optimizer got an empty parameter list (every group is empty)")

    # --- parameter groups -------------------------------------------------------------------------

    def add_param_group(self, param_group):
        """Add a group of parameters (a dict with ``"params"`` and optional hyperparameters)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, not a set")
        elif params is None:
            raise ValueError("param_group must have a 'params' entry")
        params = list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer can only optimize fastnn Parameters, but one of the params is {type(p).__name__}")
        ids = [id(p) for p in params]
        if self.buffer is not None and any(p.buffer is not self.buffer for p in params) and len(set(ids)) == len(ids):
            self._join(params)
        for p in params:
            if self.buffer is None:
                self._buffer = p.buffer
            elif p.buffer is not self.buffer:
                raise ValueError(
                    f"all parameters of an optimizer must be views into the same FlatBuffer (one model); "
                    f"parameter {p.name!r} belongs to another buffer"
                )
        if len(set(ids)) != len(ids):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if taken & set(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        group["params"] = params
        self.param_groups.append(group)
        self._segments.append(None)
        for name in self._group_state:
            self.state[name] = np.append(self.state[name], np.int64(0))
        self._grad_ranges = _merged_ranges(p for g in self.param_groups for p in g["params"])
        self._offsets = [p.offset for g in self.param_groups for p in g["params"]]
        self._init_group(len(self.param_groups) - 1, group)

    def _join(self, params):
        """Moves this optimizer's parameters and `params` (another model's) into one flat buffer,
        so that one fused pass per group still updates them all; the state moves with them."""
        held = [p for g in self.param_groups for p in g["params"]]
        taken = {id(p) for p in held}
        new = [p for p in params if id(p) not in taken]
        dtypes = sorted({str(p.dtype) for p in held + new})
        if len(dtypes) > 1:
            raise TypeError(f"{type(self).__name__}.add_param_group: the new parameters' dtype differs from the "
                            f"optimizer's ({dtypes}); convert the model first")
        self._follow_if_moved()
        repack(held + new)
        self._follow()  # the flat state follows the parameters held (the new ones start at zero)

    @property
    def buffer(self):
        """The FlatBuffer the parameters live in now."""
        self._follow_if_moved()
        return self._buffer

    def _follow_if_moved(self):
        """One comparison per step unless some parameters moved since the last one (see _follow)."""
        if self._moves_seen != _parameter.moves():
            self._follow()

    def _follow(self):
        """Re-lays the flat state out in the parameters' current buffer after they moved.

        Each parameter's slice of every flat state array (Adam's moments, ...) moves with it and
        takes the buffer's dtype. Parameters spread over several buffers (a slice ``model[2:]``
        took some of them) are repacked into one first; parameters of different dtypes (part of
        the model converted) cannot be stepped together: TypeError.
        """
        params = [p for g in self.param_groups for p in g["params"]]
        moved = any(p.buffer is not self._buffer for p in params) or [p.offset for p in params] != self._offsets
        if moved:
            if len({id(p.buffer) for p in params}) > 1:
                dtypes = sorted({str(p.dtype) for p in params})
                if len(dtypes) > 1:
                    raise TypeError(
                        f"{type(self).__name__}: its parameters now have different dtypes {dtypes} (part of the model "
                        "was converted with .to()/.double()); convert the whole model, or make a new optimizer")
                repack(params)
            buffer = params[0].buffer
            for key in self._flat_state:
                old = self.state.get(key)
                if old is None:
                    continue
                new = np.zeros(buffer.params.size, dtype=buffer.dtype)
                for p, offset in zip(params, self._offsets):
                    new[p.offset : p.offset + p.size] = old[offset : offset + p.size]
                self.state[key] = new
            self._buffer = buffer
            self._offsets = [p.offset for p in params]
            self._segments = [None] * len(self.param_groups)
            self._grad_ranges = _merged_ranges(params)
        self._moves_seen = _parameter.moves()

    def _check_group(self, group):
        """Raise ValueError for invalid hyperparameters (messages as in torch.optim)."""
        _check_range(group["lr"], "learning rate")
        _check_range(group["weight_decay"], "weight_decay value")
        _check_range(group["l1"], "l1 value")
        if group["max_norm"] is not None:
            _check_range(group["max_norm"], "max_norm value", low_inclusive=False)
        for key in _FLAGS:
            if key in group and not isinstance(group[key], (bool, np.bool_)):
                raise ValueError(f"Invalid {key}: {group[key]!r} (must be True or False)")

    def _recheck_groups(self):
        """Hyperparameters may be changed between steps (schedulers, users): a negative or NaN
        learning rate set that way is refused before it is used, as at construction."""
        for i, group in enumerate(self.param_groups):
            try:
                self._check_group(group)
            except ValueError as e:
                raise ValueError(f"{type(self).__name__}.step: param_groups[{i}]: {e}") from None

    def _init_group(self, index, group):
        """Initialize the state of a new group (Adagrad's accumulator); nothing by default."""

    def _group_segments(self, index):
        """(segment table, has a trainable parameter) of a group; rebuilt when a parameter was
        frozen or unfrozen since the last step."""
        params = self.param_groups[index]["params"]
        signature = tuple(p.flags for p in params)
        cached = self._segments[index]
        if cached is None or cached[0] != signature:
            cached = (signature, segment_table(params), any(flags & TRAINABLE for flags in signature))
            self._segments[index] = cached
        return cached[1], cached[2]

    def _flat(self, name, fill=0.0):
        """The flat state array `name`, allocated (filled with `fill`) on first use."""
        array = self.state.get(name)
        if array is None:
            array = np.full(self.buffer.params.size, fill, dtype=self.buffer.dtype)
            self.state[name] = array
        return array

    # --- stepping ---------------------------------------------------------------------------------

    def zero_grad(self, set_to_none=True):
        """Zero the gradients of this optimizer's parameters (one fill when they cover the whole buffer).

        ``set_to_none`` is PyTorch's argument: the gradients are views into the flat gradient
        buffer and are zeroed either way (see ``Module.zero_grad``).
        """
        _v.check_bool(set_to_none, f"{type(self).__name__}.zero_grad", "set_to_none")
        grads = self.buffer.grads
        if len(self._grad_ranges) == 1 and self._grad_ranges[0] == (0, grads.size):
            grads.fill(0)
        else:
            for start, end in self._grad_ranges:
                grads[start:end] = 0

    def step(self, closure=None):
        """One optimization step over every parameter group; returns closure() if given.

        Each group's step counter advances when the group has a trainable parameter.
        """
        loss = None if closure is None else closure()
        self._follow_if_moved()
        self._recheck_groups()
        for index, group in enumerate(self.param_groups):
            segments, trainable = self._group_segments(index)
            if not trainable:
                continue  # torch skips parameters without gradients
            self.state["step"][index] += 1
            self._step_group(index, group, segments, int(self.state["step"][index]))
        return loss

    def _step_group(self, index, group, segments, step, defer=False):
        """Steps one group now, or (defer=True) returns it as a ``_C.Stepper`` for the C++ loop."""
        raise NotImplementedError

    def _deferred_steps(self):
        """The steps of every trainable group, prepared for the C++ training loop.

        Stepper k-th call takes step ``state["step"] + 1 + k``; call :meth:`_advance` with the
        number of steps taken afterwards. Hyperparameters are read now: make new ones after a
        scheduler changes the learning rate.
        """
        self._follow_if_moved()
        self._recheck_groups()
        steps = []
        for index, group in enumerate(self.param_groups):
            segments, trainable = self._group_segments(index)
            if trainable:
                steps.append(self._step_group(index, group, segments, int(self.state["step"][index]) + 1, defer=True))
        return steps

    def _advance(self, steps_taken):
        """Records `steps_taken` deferred steps in the per-group counters."""
        if steps_taken <= 0:
            return
        for index in range(len(self.param_groups)):
            if self._group_segments(index)[1]:
                self.state["step"][index] += steps_taken
                self._after_steps(index)

    def _after_steps(self, index):
        """Subclass hook after deferred steps of group `index` ran."""

    # --- saving -----------------------------------------------------------------------------------

    def state_dict(self):
        """The optimizer's state as plain data: ``{"state": {name: ndarray}, "param_groups": [dict]}``.

        ``state`` holds copies of the flat arrays and the per-group counters; each group lists its
        hyperparameters and ``"params"``: the indices of its parameters (numbered across groups in
        order, as in PyTorch). No pickling is needed to store it (e.g. ``np.savez`` the arrays).
        """
        self._follow_if_moved()
        groups, start = [], 0
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(saved)
        return {"state": {name: array.copy() for name, array in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore a state saved by :meth:`state_dict` of an optimizer of the same kind and layout.

        Raises ValueError (before changing anything) when groups, hyperparameters or arrays do not
        match this optimizer: the number of groups or of parameters per group, a missing or invalid
        hyperparameter, an unknown state entry, or a state array of the wrong shape or dtype.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'param_groups' and 'state', got {keys}")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or len(saved_groups) != len(self.param_groups):
            n = len(saved_groups) if isinstance(saved_groups, (list, tuple)) else type(saved_groups).__name__
            raise ValueError(
                f"{name}.load_state_dict: loaded state dict has {n} parameter groups, the optimizer has "
                f"{len(self.param_groups)}"
            )
        new_groups, start = [], 0
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or len(saved.get("params", ())) != len(group["params"]):
                n = len(saved.get("params", ())) if isinstance(saved, dict) else "?"
                raise ValueError(
                    f"{name}.load_state_dict: loaded state dict contains a parameter group that doesn't match the "
                    f"size of optimizer's group (group {i}: {n} parameters saved, {len(group['params'])} in the optimizer)"
                )
            # the flat state is laid out in this order: indices that differ would pair state with other parameters
            expected = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            if list(saved["params"]) != expected:
                raise ValueError(f"{name}.load_state_dict: parameter group {i} lists parameters {list(saved['params'])}, "
                                 f"expected {expected} (state_dict numbers parameters in order across groups)")
            missing = sorted(set(self.defaults) - set(saved))
            if missing:
                raise ValueError(f"{name}.load_state_dict: parameter group {i} lacks the hyperparameters {missing}")
            new = {key: value for key, value in saved.items() if key != "params"}
            try:
                self._check_group(new)
            except ValueError as e:
                raise ValueError(f"{name}.load_state_dict: parameter group {i}: {e}") from None
            new["params"] = group["params"]
            new_groups.append(new)
        if not isinstance(saved_state, dict):
            raise ValueError(f"{name}.load_state_dict: 'state' must be a dict, got {type(saved_state).__name__}")
        unknown = sorted(set(saved_state) - set(self._flat_state) - set(self._group_state))
        if unknown:
            raise ValueError(
                f"{name}.load_state_dict: unknown state entries {unknown}; {name} keeps "
                f"{sorted(self._flat_state + self._group_state)}"
            )
        n, n_groups = self.buffer.params.size, len(self.param_groups)
        new_state = {}
        for key in self._group_state:
            value = saved_state.get(key)
            if not isinstance(value, np.ndarray) or value.shape != (n_groups,) or value.dtype.kind not in "iu":
                got = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else repr(value)
                raise ValueError(
                    f"{name}.load_state_dict: state[{key!r}] must be an integer array of shape ({n_groups},) "
                    f"(one count per parameter group), got {got}"
                )
            if (value < 0).any():
                raise ValueError(f"{name}.load_state_dict: state[{key!r}] has negative counts: {value}")
            new_state[key] = value.astype(np.int64)
        for key in self._flat_state:
            if key not in saved_state:
                continue
            value = saved_state[key]
            if not isinstance(value, np.ndarray) or value.shape != (n,) or value.dtype != self.buffer.dtype:
                got = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else repr(value)
                raise ValueError(
                    f"{name}.load_state_dict: state[{key!r}] must be a {self.buffer.dtype} array of shape ({n},) "
                    f"like the model's flat buffer, got {got}"
                )
            bad = _C.first_nonfinite(value)
            if bad >= 0:
                raise ValueError(f"{name}.load_state_dict: state[{key!r}] contains NaN or infinity "
                                 f"(first at index {bad}: {value[bad]})")
            if key in self._nonnegative_state and (value < 0).any():
                i = int(np.argmax(value < 0))
                raise ValueError(f"{name}.load_state_dict: state[{key!r}] must be >= 0 (it accumulates squares), "
                                 f"got {value[i]} at index {i}")
            new_state[key] = np.array(value, dtype=self.buffer.dtype, order="C", copy=True)
        self._check_loaded_state(new_state)
        self.param_groups[:] = new_groups
        self.state = new_state
        self._segments = [None] * n_groups

    def _check_loaded_state(self, state):
        """Raise ValueError when loaded state arrays are missing for groups that have stepped."""
        if (state["step"] > 0).any():
            missing = [key for key in self._required_after_step if key not in state]
            if missing:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: the state has steps {state['step']} but lacks {missing}"
                )

    # --- copying -----------------------------------------------------------------------------------

    def __reduce__(self):
        """pickle / copy.deepcopy: the hyperparameters, the state (each parameter's slice of the flat
        arrays) and the parameters, which pickle as their places in (a copy of) their model, so that
        ``copy.deepcopy((model, opt))`` or ``pickle.dumps((model, opt))`` gives an optimizer over the
        copied model, and a copied optimizer alone one over a copy of its model."""
        self._follow_if_moved()
        params = [p for g in self.param_groups for p in g["params"]]
        flat = {key: [self.state[key][p.offset : p.offset + p.size].copy() for p in params]
                for key in self._flat_state if key in self.state}
        counters = {key: self.state[key].copy() for key in self._group_state}
        groups = [dict(g) for g in self.param_groups]
        return (_rebuild_optimizer, (type(self), dict(self.defaults), groups, flat, counters))

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines + [")"])


def _merged_ranges(parameters):
    """Sorted, merged [start, end) ranges covered by `parameters` in the flat buffer."""
    spans = sorted((p.offset, p.offset + p.size) for p in parameters if p.size > 0)
    merged = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _rebuild_optimizer(cls, defaults, groups, flat, counters):
    """The optimizer that Optimizer.__reduce__ describes, over the (copied) parameters in `groups`."""
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    opt = cls(groups, **{k: v for k, v in defaults.items() if k in accepted})
    opt.defaults = dict(defaults)
    params = [p for g in opt.param_groups for p in g["params"]]
    state = {key: value.copy() for key, value in counters.items()}
    for key, slices in flat.items():
        array = np.zeros(opt.buffer.params.size, dtype=opt.buffer.dtype)
        for p, values in zip(params, slices):
            array[p.offset : p.offset + p.size] = values
        state[key] = array
    opt.state = state
    return opt
