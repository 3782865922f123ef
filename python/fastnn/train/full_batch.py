"""fit() with a second-order optimizer (LBFGS, ConjugateGradient, BFGS, Newton, HessianFree):
full-batch (or large-batch) training where every loss/gradient evaluation of a step runs in C++
(``_C.FullBatchObjective_*``, net/full_batch.h) with no Python closure per evaluation.

One epoch is one optimizer step (up to the optimizer's ``max_iter`` iterations) on all of the data,
or, with ``batch_size`` < N, one step per batch of ``batch_size`` samples. History records per
epoch the objective after the step (``loss``: the mean loss plus the optimizer's weight_decay
penalty), ``accuracy`` (eval mode), the step's ``iterations``, ``evaluations`` (loss and gradient:
one pass over the data each) and ``products`` (the exact curvature products H v or G v that
HessianFree and Newton use: about two passes each), and validation metrics; ``optimizer.last_result`` says why the last step stopped. A callback with a method
``on_iteration(iteration, logs)`` is also called after every iteration of the method (``logs``:
``{"loss": ..., "evaluations": ..., "products": ...}``, the counts so far of the objective of the
step: of the whole fit with full-batch steps; setting ``self.fit_state.stop_training = True`` there stops the step and the fit).
"""

import math
import time

import numpy as np

from .._config import _C
from ..nn.parameter import TRAINABLE
from .callbacks import TerminateOnNaN
from .history import History
from .progress import write_line

__all__ = ["fit_full_batch", "EVAL_CHUNK"]

EVAL_CHUNK = 8192  # samples per forward/backward inside one evaluation (BatchNorm statistics are per chunk)


def _objective(cpp_model, X, y, kernel, reduction, opt, seed):
    buffer = opt.buffer
    owned = {id(p) for p in opt._params()}
    if any(p.flags & TRAINABLE and id(p) not in owned for p in buffer.parameters):  # frozen ones get no gradient
        raise ValueError(f"fit: {type(opt).__name__} must optimize all of the model's trainable parameters "
                         "(create it from model.parameters())")
    cls = _C.FullBatchObjective_float32 if buffer.dtype == np.float32 else _C.FullBatchObjective_float64
    wd = float(opt.param_groups[0].get("weight_decay", 0.0) or 0.0)
    return cls(cpp_model._layer, X, y, kernel, reduction, buffer.params, buffer.grads, min(EVAL_CHUNK, len(X)), wd,
               buffer.segments(), int(seed))


def fit_full_batch(model, cpp_model, X, y, kernel, loss_obj, opt, epochs, batch_size, val, width, shuffle, seed,
                   callbacks, verbose, initial_epoch, fit_state, metrics, drop_last=False):
    """The second-order branch of fit(); arguments already validated by fit()."""
    n = len(X)
    batch_size = n if batch_size is None else min(batch_size, n)
    history = History()
    for cb in callbacks:
        cb.set_context(cpp_model, opt, fit_state)
        cb.on_train_begin({})
    terminate_on_nan = any(isinstance(cb, TerminateOnNaN) for cb in callbacks)
    whole = _objective(cpp_model, X, y, kernel, loss_obj.reduction, opt, seed) if batch_size == n else None
    rng = np.random.default_rng(seed)
    hooks = [cb.on_iteration for cb in callbacks if callable(getattr(cb, "on_iteration", None))]

    current = [None]  # the objective of the running step

    def on_iteration(iteration, loss):
        logs = {"loss": float(loss), "evaluations": current[0].evaluations, "products": current[0].products}
        for hook in hooks:
            hook(int(iteration), logs)
        return not fit_state.stop_training
    for epoch in range(initial_epoch, epochs):  # Keras: epochs is the last epoch's index
        fit_state.epoch = epoch
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        start = time.perf_counter()
        cpp_model.train()
        if whole is not None:
            parts = [whole]
        else:
            order = rng.permutation(n) if shuffle else np.arange(n)
            parts = []
            for b in range(n // batch_size if drop_last else math.ceil(n / batch_size)):
                idx = order[b * batch_size:(b + 1) * batch_size]
                Xb, yb = np.ascontiguousarray(X[idx]), np.ascontiguousarray(y[idx])
                parts.append(_objective(cpp_model, Xb, yb, kernel, loss_obj.reduction, opt, seed))
        iterations = evaluations = products = 0
        result = None
        for objective in parts:
            objective.set_step(int(fit_state.global_step))
            products_before = objective.products
            current[0] = objective
            try:
                result = opt._guarded_run(objective, callback=on_iteration if hooks else None)
            except ValueError as e:
                if "not finite" in str(e) or "non-finite" in str(e):
                    if terminate_on_nan:
                        result = None
                        break
                    raise FloatingPointError(f"fit: the loss is NaN or infinite at epoch {epoch + 1} before the "
                                             f"step; the parameters are unchanged ({e})") from None
                raise
            fit_state.global_step += 1
            iterations += result["iterations"]
            evaluations += result["evaluations"]
            products += objective.products - products_before
        if result is None:
            break
        logs = {"loss": float(result["loss"])}
        if kernel != "mse":
            stats = _C.evaluate(cpp_model._layer, X, y, kernel, loss_obj.reduction, min(EVAL_CHUNK, n))
            logs["accuracy"] = metrics(stats, kernel, width)[1]
        if val is not None:
            vstats = _C.evaluate(cpp_model._layer, val[0], val[1], kernel, loss_obj.reduction, min(EVAL_CHUNK, len(val[0])))
            val_loss, val_acc = metrics(vstats, kernel, width)
            logs["val_loss"] = val_loss
            if val_acc is not None:
                logs["val_accuracy"] = val_acc
        logs["lr"] = float(opt.param_groups[0].get("lr", 1.0))
        logs["iterations"] = iterations
        logs["evaluations"] = evaluations
        logs["products"] = products
        logs["seconds"] = time.perf_counter() - start
        if verbose:
            shown = " ".join(f"{k} {v:.4f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy"))
            write_line(f"epoch {epoch + 1}/{epochs}: {shown} ({iterations} iterations, {evaluations} "
                       f"evaluations, {logs['seconds']:.2f}s; {result['message']})")
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        history.append(epoch, logs)
        if fit_state.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end({})
    return history
