"""Argument checks of the public API: integers, reals, flags, seeds and choices, checked once.

Python and NumPy scalars are accepted alike (``np.int64(3)``, ``np.float32(0.5)``); a bool is
refused where a number is meant (``batch_size=True``), a number where a flag is meant
(``shuffle='no'``, ``shuffle=2``), a float where an integer is meant (``batch_size=2.5``, no
truncation), NaN wherever a real is. Errors name the function and the argument, as the house
style asks: ``fit: batch_size must be a positive integer, got 2.5``.
"""

import math
import numbers

import numpy as np

__all__ = ["as_array", "check_bool", "check_choice", "check_int", "check_real", "check_seed", "is_int", "is_real"]

SEED_LIMIT = 2**64  # seeds and step counters are uint64 in C++


def is_int(value):
    """An integer that is not a bool (np.integer counts, np.bool_ does not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """A real number that is not a bool (ints, floats and their NumPy scalars)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _real_wanted(low, high, low_open, high_open, finite):
    """'positive and finite', 'in [0, 1)', ...: what check_real asks for, in words."""
    if low != -math.inf and high != math.inf:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low != -math.inf:
        what = ("positive" if low_open else "non-negative") if low == 0 else f"{'>' if low_open else '>='} {low}"
    elif high != math.inf:
        what = f"{'<' if high_open else '<='} {high}"
    else:
        return "a finite number" if finite else "a number (not NaN)"
    return what + (" and finite" if finite else " (not NaN)")


def check_int(value, fn, name, low=None, high=None):
    """`value` as an int in [low, high] (either bound may be None)."""
    if low == 1 and high is None:
        what = "a positive integer"
    elif low == 0 and high is None:
        what = "a non-negative integer"
    elif high is None:
        what = f"an integer >= {low}" if low is not None else "an integer"
    elif low is None:
        what = f"an integer <= {high}"
    else:
        what = f"an integer in [{low}, {high}]"
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        raise (TypeError if not is_int(value) and not is_real(value) else ValueError)(
            f"{fn}: {name} must be {what}, got {value!r}")
    return int(value)


def check_real(value, fn, name, low=-math.inf, high=math.inf, low_open=False, high_open=False, finite=True):
    """`value` as a float in the interval; never NaN, never infinite unless finite=False."""
    if not is_real(value):
        raise TypeError(f"{fn}: {name} must be a real number, got {value!r}")
    v = float(value)
    ok = not math.isnan(v) and (not finite or math.isfinite(v))
    ok = ok and (low < v if low_open else low <= v) and (v < high if high_open else v <= high)
    if not ok:
        raise ValueError(f"{fn}: {name} must be {_real_wanted(low, high, low_open, high_open, finite)}, got {value!r}")
    return v


def check_bool(value, fn, name):
    """`value` as a bool: True/False (or np.bool_) only; 'no', 0 or None are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_seed(value, fn, name="seed"):
    """A seed or step counter: an integer in [0, 2**64)."""
    if not is_int(value) or not 0 <= value < SEED_LIMIT:
        raise (ValueError if is_int(value) else TypeError)(
            f"{fn}: {name} must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def check_choice(value, fn, name, choices):
    """`value` if it is one of `choices` (compared with ==, types checked: 1 is not True)."""
    for c in choices:
        if (is_int(value) and is_int(c) or type(value) is type(c)) and value == c:
            return c
    raise ValueError(f"{fn}: {name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")


def as_array(data, name="X"):
    """Samples or targets from any array-like, by one rule: ``np.asarray(data)`` (an ndarray as it
    is; nested lists; anything with ``__array__``: torch tensors, pandas DataFrames, ...), which must
    give real numbers (bool, integer or float; object, string and complex arrays are a TypeError).
    The caller converts the result to the model's dtype."""
    if not isinstance(data, np.ndarray):
        try:
            data = np.asarray(data)
        except (ValueError, RuntimeError) as e:  # ragged nested lists; a torch tensor that requires grad
            hint = " (call .detach() on a tensor that requires grad)" if "requires grad" in str(e) else ""
            raise TypeError(f"{name} must be an array of numbers{hint}: {e}") from None
    if data.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {data.dtype} (bool, integer and float values are taken)")
    return data


# --- typed arguments of the bindings ---------------------------------------------------------------
# Most arguments reach C++ as objects that the binding checks itself; some are typed (bool, float,
# int, str), and for those pybind11 answers a wrong type with "incompatible function arguments"
# and a dump of every argument, and reads None as False. check_binding_arguments wraps the
# functions and methods of the compiled module that have such arguments, so that a wrong type is
# an error naming the argument, checked by the type the binding declares (a few hundred ns a call).

_BINDING_KINDS = {"bool": "bool", "typing.SupportsFloat | typing.SupportsIndex": "real", "float": "real",
                  "typing.SupportsInt | typing.SupportsIndex": "int", "int": "int", "str": "str"}
_BINDING_WANTED = {"bool": "True or False", "real": "a real number", "int": "an integer that fits 64 bits",
                   "str": "a string"}


def _binding_params(cpp_fn):
    """[(position, name, kind)] of the typed parameters in a pybind11 signature line (methods count
    `self` as position 0); [] for overloaded functions, whose arguments pybind11 dispatches on."""
    line = (getattr(cpp_fn, "__doc__", None) or "").split("\n", 1)[0]
    if "(" not in line or ") ->" not in line:
        return []
    inside = line[line.find("(") + 1: line.rfind(") ->")]
    params, depth, start = [], 0, 0  # (name, declared type) split at the top-level commas
    for i, ch in enumerate(inside + ","):
        depth += 1 if ch in "[(" else -1 if ch in "])" else 0
        if ch == "," and depth == 0:
            name, _, rest = inside[start:i].strip().partition(": ")
            params.append((name, rest.split(" = ", 1)[0].strip()))
            start = i + 1
    return [(pos, name, _BINDING_KINDS[t]) for pos, (name, t) in enumerate(params) if t in _BINDING_KINDS]


def _binding_value_ok(kind, value):
    if kind == "bool":
        return isinstance(value, (bool, np.bool_))
    if kind == "real":
        return is_real(value)
    if kind == "int":
        return is_int(value) and -2**63 <= value < 2**64
    return isinstance(value, str)


def _checked(fn, typed, label):
    """fn with its typed arguments checked; label None: a method, named by its object's class."""
    import functools

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        for pos, name, kind in typed:
            if pos < len(args):
                value = args[pos]
            elif name in kwargs:
                value = kwargs[name]
            else:
                continue  # the default
            if not _binding_value_ok(kind, value):
                op = label or f"{type(args[0]).__name__.rsplit('_', 1)[0]}.{fn.__name__}"
                raise (ValueError if kind == "int" and is_int(value) else TypeError)(
                    f"[{op}] {name} must be {_BINDING_WANTED[kind]}, got {value!r}")
        return fn(*args, **kwargs)

    return checked


def check_binding_arguments(module):
    """Wraps, in place, the functions and class methods of a pybind11 module whose signatures
    declare typed scalars (see above)."""
    for name, obj in list(vars(module).items()):
        if isinstance(obj, type):
            for attr, fn in list(vars(obj).items()):
                typed = _binding_params(fn) if callable(fn) and (not attr.startswith("__") or attr == "__init__") else []
                if typed:
                    setattr(obj, attr, _checked(fn, typed, name.rsplit("_", 1)[0] if attr == "__init__" else None))
        elif callable(obj) and not name.startswith("__"):
            typed = _binding_params(obj)
            if typed:
                setattr(module, name, _checked(obj, typed, name))
