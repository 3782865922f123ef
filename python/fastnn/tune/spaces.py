"""Search spaces: each hyperparameter is a distribution to sample from, a list of grid points, and
a way to narrow around good values (coarse-to-fine).

    space = {"lr": tune.loguniform(1e-4, 1e-1), "hidden": tune.choice([32, 64, 128]),
             "dropout": tune.uniform(0.0, 0.5), "layers": tune.randint(1, 4), "batch": tune.quniform(16, 128, 16)}
"""

import math

import numpy as np

from .. import _validate as _v

__all__ = ["Space", "choice", "uniform", "loguniform", "randint", "quniform", "sample", "grid", "narrow"]


class Space:
    """One hyperparameter's range. ``sample(rng)`` draws a value, ``grid(q)`` lists up to q points,
    ``narrow(values, margin)`` is the range spanning `values` widened by `margin` of their spread."""

    def sample(self, rng):
        raise NotImplementedError

    def grid(self, q):
        raise NotImplementedError

    def narrow(self, values, margin):
        raise NotImplementedError


class choice(Space):
    """One of `options` (any values), equally likely; the grid is all of them."""

    def __init__(self, options):
        options = list(options)
        if not options:
            raise ValueError("choice: options must not be empty")
        self.options = options

    def sample(self, rng):
        return self.options[int(rng.integers(len(self.options)))]

    def grid(self, q):
        return list(self.options)

    def narrow(self, values, margin):
        kept = [o for o in self.options if any(_same(o, v) for v in values)]
        return choice(kept or self.options)

    def __repr__(self):
        return f"choice({self.options!r})"


def _same(a, b):
    return type(a) is type(b) and a == b if not isinstance(a, (int, float)) else a == b


class _Interval(Space):
    log = False

    def __init__(self, low, high, fn):
        self.low = _v.check_real(low, fn, "low")
        self.high = _v.check_real(high, fn, "high")
        if not self.low < self.high:
            raise ValueError(f"{fn}: low must be < high, got low={low}, high={high}")

    def _to(self, x):
        return math.log(x) if self.log else x

    def _from(self, t):
        return math.exp(t) if self.log else t

    def sample(self, rng):
        return self._from(float(rng.uniform(self._to(self.low), self._to(self.high))))

    def grid(self, q):
        q = _v.check_int(q, "grid", "points", 1)
        if q == 1:
            return [self._from((self._to(self.low) + self._to(self.high)) / 2)]
        return [self._from(t) for t in np.linspace(self._to(self.low), self._to(self.high), q)]

    def _narrowed(self, values, margin):
        t = [self._to(v) for v in values]
        width = (max(t) - min(t)) or (self._to(self.high) - self._to(self.low)) * margin
        lo = max(self._to(self.low), min(t) - margin * width)
        hi = min(self._to(self.high), max(t) + margin * width)
        if not lo < hi:
            lo, hi = self._to(self.low), self._to(self.high)
        return self._from(lo), self._from(hi)

    def narrow(self, values, margin):
        return type(self)(*self._narrowed(values, margin))

    def __repr__(self):
        return f"{type(self).__name__}({self.low!r}, {self.high!r})"


class uniform(_Interval):
    """A float uniform in [low, high]."""

    def __init__(self, low, high):
        super().__init__(low, high, "uniform")


class loguniform(_Interval):
    """A float whose logarithm is uniform in [log low, log high] (learning rates, weight decays)."""

    log = True

    def __init__(self, low, high):
        super().__init__(low, high, "loguniform")
        if self.low <= 0:
            raise ValueError(f"loguniform: low must be > 0, got {low}")


class randint(Space):
    """An integer in [low, high), as numpy's ``integers(low, high)``."""

    def __init__(self, low, high):
        self.low = _v.check_int(low, "randint", "low")
        self.high = _v.check_int(high, "randint", "high")
        if not self.low < self.high:
            raise ValueError(f"randint: low must be < high, got low={low}, high={high}")

    def sample(self, rng):
        return int(rng.integers(self.low, self.high))

    def grid(self, q):
        q = _v.check_int(q, "grid", "points", 1)
        return sorted({int(round(t)) for t in np.linspace(self.low, self.high - 1, min(q, self.high - self.low))})

    def narrow(self, values, margin):
        width = max(values) - min(values)
        pad = max(1, int(math.ceil(margin * width)))
        return randint(max(self.low, min(values) - pad), min(self.high, max(values) + pad + 1))

    def __repr__(self):
        return f"randint({self.low}, {self.high})"


class quniform(_Interval):
    """``round(uniform(low, high) / q) * q``: a multiple of q in [low, high] (an int when q and low are)."""

    def __init__(self, low, high, q):
        super().__init__(low, high, "quniform")
        self.q = _v.check_real(q, "quniform", "q", 0, low_open=True)
        if math.ceil(self.low / self.q) * self.q > self.high:
            raise ValueError(f"quniform: no multiple of q={q} lies in [{low}, {high}]")
        self._integral = all(_v.is_int(x) for x in (low, high, q))

    def _round(self, x):
        k = min(max(round(x / self.q), math.ceil(self.low / self.q)), math.floor(self.high / self.q))
        return int(k * self.q) if self._integral else k * self.q

    def sample(self, rng):
        return self._round(super().sample(rng))

    def grid(self, q):
        return sorted(set(self._round(x) for x in super().grid(q)))

    def narrow(self, values, margin):
        lo, hi = self._narrowed(values, margin)
        lo, hi = math.floor(lo / self.q) * self.q, math.ceil(hi / self.q) * self.q
        if self._integral:
            lo, hi = int(lo), int(hi)
        lo, hi = max(lo, self.low), min(hi, self.high)
        return quniform(lo, hi, self.q) if lo < hi else self

    def __repr__(self):
        return f"quniform({self.low!r}, {self.high!r}, {self.q!r})"


def _check_space(space, fn):
    if not isinstance(space, dict) or not space:
        raise TypeError(f"{fn}: space must be a non-empty dict of name -> tune.choice/uniform/... (or a fixed value)")
    for name in space:
        if not isinstance(name, str):
            raise TypeError(f"{fn}: space keys must be hyperparameter names (str), got {name!r}")
    return space


def sample(space, rng):
    """One config: each Space sampled (in key order), other values kept as they are."""
    return {k: (v.sample(rng) if isinstance(v, Space) else v) for k, v in space.items()}


def grid(space, points=3):
    """All configs of the grid: every choice, and `points` points across each interval."""
    import itertools

    names = list(space)
    axes = [space[k].grid(points) if isinstance(space[k], Space) else [space[k]] for k in names]
    return [dict(zip(names, values)) for values in itertools.product(*axes)]


def narrow(space, configs, margin=0.5):
    """The space narrowed to span `configs` (the best trials), widened by `margin` of their spread."""
    return {k: (v.narrow([c[k] for c in configs], margin) if isinstance(v, Space) else v) for k, v in space.items()}
