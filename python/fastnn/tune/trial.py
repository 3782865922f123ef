"""What runs in a worker: one trial (a user function, or build + fit + score of a model) and one
ensemble member's training. Module-level functions, so executors pickle them by reference; models
travel as fastnn model bytes (fastnn.io.to_bytes), data as NumPy arrays."""

import time

import numpy as np

# Config keys that are fit()'s arguments rather than the model's.
FIT_KEYS = ("lr", "optimizer", "batch_size", "loss", "clip_grad_norm", "clip_grad_value")


def _pin(threads):
    if threads is not None:
        from .. import set_num_threads

        set_num_threads(threads)


def run_function(train_fn, config, budget, seed, threads):
    """train_fn(config, budget) -> score, or (score, model): the model comes back as fastnn bytes."""
    from .. import io, manual_seed
    from ..nn.module import Module

    _pin(threads)
    manual_seed(seed)
    start = time.perf_counter()
    out = train_fn(dict(config), budget)
    model = None
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], Module):
            raise TypeError(f"train_fn must return a score or (score, fastnn model), got a tuple of {len(out)}")
        out, model = out[0], io.to_bytes(out[1])
    score = float(out)
    return {"score": score, "model": model, "seconds": time.perf_counter() - start, "logs": {}}


def run_model(build_model, config, start_epoch, budget, state, data, fit_params, seed, metric, threads):
    """Builds `build_model(config)` (or resumes `state`, the bytes of model + optimizer after
    `start_epoch` epochs), fits it up to epoch `budget`, and scores it by `metric` of the last epoch."""
    from .. import fit, io, manual_seed

    _pin(threads)
    X, y, Xv, yv = data
    params = dict(fit_params)
    params.update({k: config[k] for k in FIT_KEYS if k in config})
    begin = time.perf_counter()
    if state is None:
        manual_seed(seed)
        model = build_model(dict(config))
        optimizer = make_optimizer(model, params.pop("optimizer", "adam"), params.pop("lr", None))
    else:
        model, optimizer, _ = io.from_bytes(state, with_optimizer=True)
        params.pop("optimizer", None), params.pop("lr", None)
    history = fit(model, X, y, optimizer=optimizer, epochs=budget - start_epoch, initial_epoch=start_epoch,
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
    from .. import fit, io, manual_seed

    _pin(threads)
    manual_seed(seed)
    model = io.from_bytes(model_bytes)
    fit(model, X, y, seed=seed, verbose=0, **fit_params)
    return io.to_bytes(model)


def predict_member(model_bytes, X, batch_size=256):
    from .. import io, predict

    return predict(io.from_bytes(model_bytes), X, batch_size=batch_size)


def _as_array(a):
    return None if a is None else np.asarray(a)
