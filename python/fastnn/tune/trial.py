"""What runs in a worker: one trial (a user function, or build + fit + score of a model) and one
ensemble member's training. Module-level functions, so executors pickle them by reference; models
travel as fastnn model bytes (fastnn.io.to_bytes), data as NumPy arrays."""

import os
import shutil
import tempfile
import time

import numpy as np

from ..random import seeded

# Config keys that are fit()'s arguments rather than the model's.
FIT_KEYS = ("lr", "optimizer", "batch_size", "drop_last", "loss", "clip_grad_norm", "clip_grad_value")


def _pin(threads):
    if threads is not None:
        from .. import set_num_threads

        set_num_threads(threads)


def run_function(train_fn, config, budget, seed, threads):
    """train_fn(config, budget) -> score, or (score, model): the model comes back as fastnn bytes."""
    from .. import io
    from ..nn.module import Module

    _pin(threads)
    start = time.perf_counter()
    with seeded(seed):
        out = train_fn(dict(config), budget)
    model = None
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], Module):
            raise TypeError(f"train_fn must return a score or (score, fastnn model), got a tuple of {len(out)}")
        out, model = out[0], io.to_bytes(out[1])
    score = float(out)
    return {"score": score, "model": model, "seconds": time.perf_counter() - start, "logs": {}}


class ArrayFiles:
    """Arrays written once as .npy files, which workers on this machine map read-only (and keep
    between tasks) instead of receiving a copy of the data with every trial; pickles as its paths."""

    def __init__(self, arrays):
        self.directory = tempfile.mkdtemp(prefix="fastnn-tune-")
        self.paths = []
        for i, a in enumerate(arrays):
            path = os.path.join(self.directory, f"{i}.npy")
            np.save(path, np.ascontiguousarray(a), allow_pickle=False)
            self.paths.append(path)

    def __getstate__(self):
        return {"directory": self.directory, "paths": self.paths}

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)


_mapped = {}


def resolve(data):
    """The arrays of `data`: itself (a tuple of arrays), or those of an ArrayFiles, mapped once per process."""
    if not isinstance(data, ArrayFiles):
        return data
    if data.directory not in _mapped:
        _mapped.clear()  # one search's data at a time
        _mapped[data.directory] = tuple(np.load(p, mmap_mode="r", allow_pickle=False) for p in data.paths)
    return _mapped[data.directory]


def run_model(build_model, config, start_epoch, budget, state, data, fit_params, seed, metric, threads):
    """Builds `build_model(config)` (or resumes `state`, the bytes of model + optimizer after
    `start_epoch` epochs), fits it up to epoch `budget`, and scores it by `metric` of the last epoch."""
    from .. import fit, io

    _pin(threads)
    X, y, Xv, yv = resolve(data)
    params = dict(fit_params)
    params.update({k: config[k] for k in FIT_KEYS if k in config})
    begin = time.perf_counter()
    if state is None:
        with seeded(seed):
            model = build_model(dict(config))
        optimizer = make_optimizer(model, params.pop("optimizer", "adam"), params.pop("lr", None))
    else:
        model, optimizer, _ = io.from_bytes(state, with_optimizer=True)
        params.pop("optimizer", None), params.pop("lr", None)
    history = fit(model, X, y, optimizer=optimizer, epochs=budget, initial_epoch=start_epoch,
                  validation_data=(Xv, yv), seed=seed, verbose=0, **params)
    logs = {k: v[-1] for k, v in history.history.items() if v} if history.history else {}
    if metric not in logs:
        raise KeyError(f"tune: metric {metric!r} is not among fit's metrics {sorted(logs)}")
    return {"score": float(logs[metric]), "model": io.to_bytes(model, optimizer), "seconds": time.perf_counter() - begin,
            "logs": logs}


def make_optimizer(model, name, lr=None):
    """The optimizer fit() would make from `name` (a str: objects do not cross processes), kept so
    that its state travels with the model between the rungs of successive halving."""
    from .. import optim

    classes = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSprop,
               "adagrad": optim.Adagrad}
    if not isinstance(name, str) or name.lower() not in classes:
        raise ValueError(f"tune: optimizer must be one of {sorted(classes)}, got {name!r}")
    cls = classes[name.lower()]
    return cls(model.parameters(), lr=lr) if lr is not None else cls(model.parameters())


def fit_member(model_bytes, X, y, fit_params, seed, threads):
    """Trains one ensemble member (sent as fastnn bytes) on (X, y); returns its bytes after training."""
    from .. import fit, io

    _pin(threads)
    model = io.from_bytes(model_bytes)
    fit(model, X, y, seed=seed, verbose=0, **fit_params)
    return io.to_bytes(model)


def predict_member(model_bytes, X, batch_size=256):
    from .. import io, predict

    return predict(io.from_bytes(model_bytes), X, batch_size=batch_size)


def _as_array(a):
    return None if a is None else np.asarray(a)
