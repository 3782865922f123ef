"""Global seed for fastnn's randomness (dropout masks, RReLU slopes, initializers, shuffling).

Random draws are counter-based: a layer's mask is a function of (seed, step, layer, element), so
results do not depend on the thread count. Python-level forward calls take one step each.
"""

import contextlib
import threading

import numpy as np

_lock = threading.Lock()
_state = {"seed": 0, "step": 0}


def manual_seed(seed):
    """Sets the seed and restarts the step counter (like torch.manual_seed)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"manual_seed: seed must be an integer in [0, 2**64), got {seed!r}")
    with _lock:
        _state["seed"] = int(seed)
        _state["step"] = 0


def seed():
    return _state["seed"]


def next_step():
    with _lock:
        _state["step"] += 1
        return _state["step"]


def generator(seed=None):
    """A NumPy Generator: from `seed` if given, else derived from the global seed and a fresh step."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng([_state["seed"], next_step()])
    return np.random.default_rng(seed)


@contextlib.contextmanager
def seeded(seed):
    """``manual_seed(seed)`` for the block, then the caller's seed and step again (a search, an
    ensemble or a diagnostic run in this process leaves the user's random stream as it was)."""
    with _lock:
        saved = dict(_state)
    manual_seed(seed)
    try:
        yield
    finally:
        with _lock:
            _state.update(saved)
