"""The base of the second-order optimizers (LBFGS, ConjugateGradient, BFGS, Newton, HessianFree).

They see the model as the flat vector it is: the point is the model's flat parameter buffer and
the gradient its flat gradient buffer (no gather/scatter copies as in ``torch.optim.LBFGS``).
``step(closure)`` runs the method's whole loop in C++ (``fastnn._C``), which calls the closure for
every evaluation; ``fastnn.fit(model, X, y, optimizer=LBFGS(...))`` instead gives the loop a C++
objective over the data set (``_C.FullBatchObjective_*``), so that no Python runs per evaluation.

Beyond torch: a closure that raises leaves the parameters and the optimizer's state as they were
before the step; a step that fails (no lower loss along the search direction, NaN/inf losses)
keeps the best point found and says why in ``last_result`` (``status``, ``message``).
"""

import numpy as np

from .. import _validate as _v
from ..nn.parameter import DECAY, TRAINABLE
from .optimizer import Optimizer

__all__ = ["SecondOrderOptimizer", "StepResult"]

# Status codes of the C++ methods (optim/line_search.h Status).
MAX_ITER, GRADIENT_TOL, CHANGE_TOL, MAX_EVAL, LINE_SEARCH_FAILED, NONFINITE, NOT_DESCENT, STOPPED = range(8)
CONVERGED = (GRADIENT_TOL, CHANGE_TOL, NOT_DESCENT)


class StepResult(dict):
    """What the last step did: ``status`` (int), ``message``, ``iterations``, ``evaluations``,
    ``first_loss``, ``loss``, ``converged`` (attribute access as well as keys)."""

    __getattr__ = dict.__getitem__

    def __repr__(self):
        return f"StepResult({dict.__repr__(self)})"


def check_closure(closure, fn):
    if closure is None or not callable(closure):
        raise TypeError(f"{fn}: closure must be a callable that re-evaluates the model and returns the loss "
                        f"(as for torch.optim.LBFGS), got {type(closure).__name__}")


class SecondOrderOptimizer(Optimizer):
    """One parameter group; state as named arrays laid out for the flat buffer at the first step.

    Subclasses define ``_hyper`` {name: (kind, low)} (kind: "real", "int", "choice"), ``_state_layout(n)``
    {name: (shape, dtype or None for the buffer's)} and ``_run(objective, x, g, group)`` -> report dict.
    """

    _hyper = {}
    _group_state = ()
    _choices = {}

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        name = type(self).__name__
        if len(self.param_groups) != 1:
            raise ValueError(f"{name} doesn't support per-parameter options (parameter groups)")
        self.state = {}
        self.last_result = None
        self._layout_for = None  # (id(buffer), size, dtype) the state was laid out for

    # --- hyperparameters ------------------------------------------------------------------------

    def _check_group(self, group):
        name = type(self).__name__
        for key, (kind, low) in self._hyper.items():
            if key not in group:
                raise ValueError(f"{name}: missing hyperparameter {key!r}")
            value = group[key]
            if kind == "real":
                _v.check_real(value, name, key, low)
            elif kind == "int":
                _v.check_int(value, name, key, low)
            elif kind == "choice":
                _v.check_choice(value, name, key, self._choices[key])
            elif kind == "optional_int" and value is not None:
                _v.check_int(value, name, key, low)

    # --- state ----------------------------------------------------------------------------------

    def _params(self):
        return self.param_groups[0]["params"]

    def _state_layout(self, n, dtype):
        raise NotImplementedError

    def _ensure_state(self):
        """The state arrays for the current buffer; laid out anew (the method starts over) when the
        parameters moved to another buffer or dtype since they were laid out."""
        buffer = self.buffer
        key = (id(buffer), buffer.params.size, buffer.dtype)
        if self._layout_for != key or not self.state:
            n = buffer.params.size
            self.state = {k: np.zeros(shape, dtype=dtype or buffer.dtype)
                          for k, (shape, dtype) in self._state_layout(n, buffer.dtype).items()}
            self._init_state(self.state)
            self._layout_for = key
        return self.state

    def _init_state(self, state):
        """Initial values (zeros by default)."""

    def _owned_mask(self):
        """Boolean mask of the buffer elements this optimizer updates, or None when it is all of them."""
        buffer = self.buffer
        mask = np.zeros(buffer.params.size, dtype=bool)
        for p in self._params():
            if p.flags & TRAINABLE:
                mask[p.offset:p.offset + p.size] = True
        return None if mask.all() else mask

    def _l2_segments(self):
        """Segment table of the parameters the L2 penalty (weight_decay) applies to."""
        rows = [(p.offset, p.size, p.flags) for p in self._params() if p.flags & TRAINABLE and p.flags & DECAY]
        return np.array(rows, dtype=np.int64).reshape(-1, 3)

    # --- stepping -------------------------------------------------------------------------------

    def _python_objective(self, closure, x, g, first):
        """The closure as the C++ objective: returns its loss as a float (the gradient is in g) and
        keeps its first return value in first[0]; zeroes the gradient of parameters not
        optimized; adds weight_decay / 2 |w|^2 when set."""
        mask = self._owned_mask()
        wd = float(self.param_groups[0].get("weight_decay", 0.0) or 0.0)
        segs = self._l2_segments() if wd else None
        name = type(self).__name__

        def objective():
            loss = closure()
            if not first:
                first.append(loss)
            try:
                value = float(loss)
            except (TypeError, ValueError):
                raise TypeError(f"{name}.step: the closure must return the loss as a number, got "
                                f"{type(loss).__name__}") from None
            if mask is not None:
                g[~mask] = 0
            if wd:
                for offset, size, _ in segs:
                    w = x[offset:offset + size]
                    value += 0.5 * wd * float(w @ w)
                    g[offset:offset + size] += wd * w
            return value

        return objective

    def step(self, closure):
        """Runs the method (up to max_iter iterations) from the current parameters; returns the
        closure's first value (the loss before the step), as torch.optim.LBFGS does."""
        name = type(self).__name__
        check_closure(closure, f"{name}.step")
        self._recheck_groups()
        buffer = self.buffer
        first = []
        objective = self._python_objective(closure, buffer.params, buffer.grads, first)
        self._guarded_run(objective)
        return first[0] if first else None

    def _guarded_run(self, objective, **extra):
        """Runs the C++ loop; on an exception, puts the parameters and the state back as they were."""
        buffer = self.buffer
        state = self._ensure_state()
        x = buffer.params
        saved_x = x.copy()
        saved_state = {k: v.copy() for k, v in state.items()}
        try:
            report = self._run(objective, x, buffer.grads, self.param_groups[0], state, **extra)
        except BaseException:
            x[...] = saved_x
            for k, v in saved_state.items():
                state[k][...] = v
            raise
        report["converged"] = report["status"] in CONVERGED
        self.last_result = StepResult(report)
        return self.last_result

    def _run(self, objective, x, g, group, state, **extra):
        raise NotImplementedError

    # --- saving ---------------------------------------------------------------------------------

    def state_dict(self):
        """``{"state": {name: ndarray copy}, "param_groups": [hyperparameters + "params" indices]}``."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        groups[0]["params"] = list(range(len(self._params())))
        return {"state": {k: v.copy() for k, v in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores a state_dict of an optimizer of the same kind over a buffer of the same size and
        dtype; ValueError (changing nothing) when it does not fit."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'param_groups' and 'state'")
        groups, saved = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or len(groups) != 1 or not isinstance(groups[0], dict):
            raise ValueError(f"{name}.load_state_dict: expected one parameter group")
        if len(groups[0].get("params", ())) != len(self._params()):
            raise ValueError(f"{name}.load_state_dict: the saved group has {len(groups[0].get('params', ()))} "
                             f"parameters, the optimizer {len(self._params())}")
        new_group = {k: v for k, v in groups[0].items() if k != "params"}
        missing = sorted(set(self.defaults) - set(new_group))
        if missing:
            raise ValueError(f"{name}.load_state_dict: the parameter group lacks the hyperparameters {missing}")
        try:
            self._check_group(new_group)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}.load_state_dict: {e}") from None
        if not isinstance(saved, dict):
            raise ValueError(f"{name}.load_state_dict: 'state' must be a dict")
        new_state = {}
        if saved:
            buffer = self.buffer
            layout = self._state_layout(buffer.params.size, buffer.dtype)
            if set(saved) != set(layout):
                raise ValueError(f"{name}.load_state_dict: state entries {sorted(saved)}, expected {sorted(layout)}")
            for k, (shape, dtype) in layout.items():
                v = saved[k]
                want = np.dtype(dtype or buffer.dtype)
                if not isinstance(v, np.ndarray) or v.shape != tuple(np.atleast_1d(shape)) and v.shape != shape \
                        or v.dtype != want:
                    got = f"{v.dtype} {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
                    raise ValueError(f"{name}.load_state_dict: state[{k!r}] must be {want} of shape {shape}, got {got}")
                if v.dtype.kind == "f" and not np.isfinite(v).all():
                    raise ValueError(f"{name}.load_state_dict: state[{k!r}] contains NaN or infinity")
                new_state[k] = np.array(v, copy=True, order="C")
        new_group["params"] = self._params()
        self.param_groups[0] = new_group
        self.state = new_state
        self._layout_for = (id(self.buffer), self.buffer.params.size, self.buffer.dtype) if new_state else None

    # The first-order machinery of the base class does not apply.
    def _step_group(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} needs a closure: step(closure)")

    def _deferred_steps(self):
        raise TypeError(f"{type(self).__name__} is not a first-order optimizer; fit() runs it full-batch")


def curvature_callback(hvp, n, dtype, fn):
    """A user's hvp(v) -> (n,) array as the C++ callback (v, out): the result is checked."""
    if hvp is None:
        return None
    if not callable(hvp):
        raise TypeError(f"{fn}: hvp must be callable hvp(v) -> H v, got {type(hvp).__name__}")

    def product(v, out):
        r = np.asarray(hvp(v))
        if r.shape != (n,):
            raise ValueError(f"{fn}: hvp(v) must return an array of shape ({n},), got {r.shape}")
        out[...] = r

    return product


def hessian_callback(hess, n, fn, x=None):
    """A user's hess(x) -> (n, n) array as the C++ callback filling H (flat n*n)."""
    if hess is None:
        return None
    if not callable(hess):
        raise TypeError(f"{fn}: hess must be callable hess(x) -> (n, n) array, got {type(hess).__name__}")

    def fill(H):
        r = np.asarray(hess(x) if x is not None else hess())
        if r.shape != (n, n):
            raise ValueError(f"{fn}: hess must return an array of shape ({n}, {n}), got {r.shape}")
        H[...] = r.reshape(-1)

    return fill
