"""fit / evaluate / predict / train_step: the epoch loop runs in C++ (fastnn._C.train_epoch).

Python validates the data once, then calls C++ once per epoch; it is called back only at epoch
ends (callbacks, schedules, history) and for a progress bar refresh at most ~10 times a second.
"""

import contextlib
import math
import time
import warnings

import numpy as np

from .. import _validate as _v
from .. import augment as _augment
from .. import optim as _optim
from .. import random as _random
from .._blas_pool import quieted as _quieted
from .._config import _C
from ..nn.activation import Softmax
from ..nn.batchnorm import _BatchNorm
from ..nn.container import Sequential
from .callbacks import Callback, TerminateOnNaN
from . import full_batch as _full_batch
from . import parallel as _parallel
from .claim import exclusive_training
from .history import History
from .metrics import Metrics
from .progress import make_bar, write_line
from .split import ValidationSplit
from .checks import as_cpp_model, as_loss, check_X, check_y, output_width

_FULL_BATCH_KERNELS = ("cross_entropy", "bce_with_logits", "mse")  # what net/full_batch.h evaluates
_OPTIMIZERS = {"sgd": _optim.SGD, "adam": _optim.Adam, "adamw": _optim.AdamW, "rmsprop": _optim.RMSprop,
               "adagrad": _optim.Adagrad}


class FitState:
    """What callbacks may read or change while fit() runs."""

    def __init__(self):
        self.stop_training = False
        self.epoch = 0
        self.global_step = 0


def _loss_options(loss_obj, metrics=None, fn="fit"):
    """The options dict of the C++ objective (fastnn._C.train_epoch's loss_options)."""
    try:
        options = dict(loss_obj.fit_options())
    except ValueError as e:
        raise ValueError(str(e).replace("fit:", f"{fn}:", 1)) from None
    if metrics is not None and metrics.top_k:
        options["top_k"] = metrics.top_k
    return options


def _remembered_loss(model, loss, y, fn):
    """evaluate's loss: the one given, else the last fit's (Keras's compile), else what the targets
    say (integer labels: cross-entropy); float targets and no loss ever given are ambiguous."""
    if loss is not None:
        return as_loss(loss, fn)
    kept = model.__dict__.get("_fit_compiled")
    if kept is not None:
        return kept["loss"], kept["loss"]._fit_kernel
    y = np.asarray(y)
    if y.ndim == 1 and y.dtype.kind in "iu":
        return as_loss("cross_entropy", fn)
    raise ValueError(f"{fn}: which loss? The model was never trained with fit() and the targets (dtype {y.dtype}, "
                     f"shape {y.shape}) may be class probabilities or regression values: pass loss= "
                     "(e.g. loss='mse' or loss='cross_entropy')")


def _warn_softmax_output(model, kernel):
    """Once per model: a Softmax output layer before cross-entropy on its logits trains badly."""
    if kernel != "cross_entropy" or model.__dict__.get("_softmax_warned"):
        return
    last = model
    while isinstance(last, Sequential) and len(last):
        last = last[len(last) - 1]
    if type(last) is Softmax:  # LogSoftmax before cross-entropy is harmless: softmax(log_softmax(z)) = softmax(z)
        object.__setattr__(model, "_softmax_warned", True)
        warnings.warn("fit: the model ends in Softmax, but CrossEntropyLoss applies softmax to the model's output "
                      "itself (it takes logits): remove the final Softmax layer (predict, then apply "
                      "fastnn.functional.softmax_forward for probabilities)", UserWarning, stacklevel=4)


def _frozen_eval_modules(model):
    """The modules the user put in eval mode whose parameters are all frozen (transfer learning):
    fit and train_step keep them in eval mode (a frozen BatchNorm's running statistics stay), as Keras
    runs a non-trainable BatchNorm in inference mode. So do the parameter-free leaves in eval mode
    (Dropout) of the frozen bottom, which runs before any trainable parameter and after a frozen
    eval-mode layer: ``model[:-1].requires_grad_(False).eval()`` sets the modes of children whose
    slice fit never sees, and its Dropouts are off as in cache_features."""
    out = []
    in_frozen_bottom = False
    for m in model.modules():  # in the order they run (children in order, each after its container)
        params = list(m.parameters())
        if not m.training and params and not any(p.requires_grad for p in params):
            out.append(m)
        elif not m.training and not params and not m._modules and in_frozen_bottom:
            out.append(m)
        own = list(m._parameters.values())
        if any(p.requires_grad for p in own):
            in_frozen_bottom = None  # for good: what runs next sees a trained layer's output
        elif own and not m.training and in_frozen_bottom is not None:
            in_frozen_bottom = True
    return out


def _train_mode(cpp_model, keep_eval):
    cpp_model.train()
    for m in keep_eval:
        m.eval()


def _as_optimizer(optimizer, model, cpp_model, lr, fn="fit"):
    """The Optimizer to train `cpp_model` with; its parameters must be the model's own."""
    if isinstance(optimizer, _optim.Optimizer):
        if lr is not None:
            raise ValueError(f"{fn}: lr= goes with an optimizer name; an Optimizer object has its own "
                             "(optimizer.param_groups[i]['lr'])")
        opt = optimizer
    elif isinstance(optimizer, str) and optimizer.lower() in _OPTIMIZERS:
        # Like a compiled Keras model, the model keeps the optimizer made from a name: another
        # fit call with the same name and lr continues with its state (Adam's moments and step)
        # instead of starting over (also after model.double(): the optimizer follows its
        # parameters). Other parameters or another name or lr make a new one.
        key = (optimizer.lower(), lr)
        params = list(cpp_model.parameters())
        kept = model.__dict__.get("_fit_optimizer")
        if kept is not None and kept[0] == key and [id(p) for g in kept[1].param_groups for p in g["params"]] == \
                [id(p) for p in params]:
            opt = kept[1]
        else:
            cls = _OPTIMIZERS[optimizer.lower()]
            opt = cls(params, lr=lr) if lr is not None else cls(params)
            object.__setattr__(model, "_fit_optimizer", (key, opt))
    else:
        raise ValueError(f"{fn}: optimizer must be an Optimizer or one of {sorted(_OPTIMIZERS)}, got {optimizer!r}")
    own = {id(p) for p in cpp_model.parameters()}
    if own:
        cpp_model.flatten_parameters_()  # first the model's buffer, which the optimizer then follows
        foreign = [p for g in opt.param_groups for p in g["params"] if id(p) not in own]
        if foreign:
            raise ValueError(f"{fn}: the optimizer does not hold this model's parameters: it holds {foreign[0]!r} "
                             f"of another model ({len(foreign)} in all); create it from model.parameters()")
        opt._follow_if_moved()  # into the model's buffer, if the parameters moved there
    return opt


def _check_batch_size(batch_size, fn):
    """A positive integer; one larger than the data means all of it (Keras): callers take min(batch_size, N)."""
    return _v.check_int(batch_size, fn, "batch_size", 1)


def _check_clip(value, name):
    """None (no clipping) or a positive threshold; inf clips nothing."""
    if value is None:
        return None
    return _v.check_real(value, "fit", name, 0, low_open=True, finite=False)


def _split(X, y, validation_data, validation_split, sample_weight):
    """(X, y, sample_weight) to train on and the validation pair or None."""
    if validation_data is not None and validation_split:
        raise ValueError("fit: give validation_data or validation_split, not both")
    if validation_data is not None and not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        raise ValueError(f"fit: validation_data must be a pair (X_val, y_val), got a {type(validation_data).__name__}"
                         + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else ""))
    if validation_split:
        split = validation_split if isinstance(validation_split, ValidationSplit) else ValidationSplit(validation_split)
        train, held = split.indices(y, len(X))
        if not split.shuffle and not split.stratify:  # the last samples (Keras): views, no copies
            cut = len(X) - len(held)
            train, held = slice(0, cut), slice(cut, None)
        sw = None if sample_weight is None else sample_weight[train]
        return X[train], y[train], sw, (X[held], y[held])
    return X, y, sample_weight, validation_data


def _sample_weights(sample_weight, class_weight, y, n, kernel):
    """fit's per-sample weights (float64 (N,), or None): sample_weight times the class_weight of each
    sample's class (Keras: a dict {class: weight}; classes not in it weigh 1)."""
    w = None
    if sample_weight is not None:
        w = np.array(sample_weight, dtype=np.float64)  # a copy: fit may index it
        if w.shape != (n,):
            raise ValueError(f"fit: sample_weight must have shape ({n},) (one weight per sample), got {w.shape}")
        if not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError("fit: sample_weight must be finite and >= 0")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(f"fit: class_weight must be a dict {{class: weight}}, got {type(class_weight).__name__}")
        if y.ndim == 1 and y.dtype.kind in "iu":
            classes = y
        elif y.ndim == 2 and y.shape[1] > 1:
            classes = y.argmax(axis=1)  # one-hot or probability rows (Keras)
        elif kernel == "bce_with_logits":
            classes = (y.reshape(n, -1)[:, 0] > 0.5).astype(np.int64)
        else:
            raise ValueError("fit: class_weight needs class targets (labels, one-hot rows or binary targets)")
        for c in class_weight:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
                raise ValueError(f"fit: class_weight keys must be class indices >= 0, got {c!r}")
        table = np.ones(int(max(classes.max(initial=0), max(class_weight, default=0))) + 1)
        for c, cw in class_weight.items():
            table[c] = _v.check_real(cw, "fit", f"class_weight[{c}]", 0)
        cw = table[np.where(classes < 0, 0, classes)]  # an ignored label (ignore_index) weighs nothing anyway
        w = cw if w is None else w * cw
    return w


def _check_batch_statistics(model, n, batch_size, drop_last=False, plan=_parallel.LOCAL):
    """ValueError before any training when a batch of the epoch would give a BatchNorm one value per
    channel (PyTorch: "Expected more than 1 value per channel when training"): batch_size=1, or a
    last batch of 1 sample (unless drop_last drops it), for a BatchNorm whose input has no spatial
    dimensions; with several processes, a shard of 1 sample of any global batch (each process
    normalizes its own shard; an empty one skips the batch). Reads the input shapes the BatchNorms
    saw in fit's first forward (output_width)."""

    def one_sample(b, drop_last=drop_last):
        return any(1 in shards for _, shards in plan.batch_counts(n, b, drop_last))
    if not one_sample(batch_size):
        return
    for name, m in model.named_modules():
        if not isinstance(m, _BatchNorm):
            continue
        shapes = [tuple(layer.last_input_shape) for layer in m._cpp_layers()]
        if any(len(s) >= 2 and math.prod(s[2:]) == 1 for s in shapes):
            if n == 1:
                fix = "the data has 1 sample"
            elif batch_size == 1:
                fix = "use batch_size >= 2"
            else:
                good = _parallel.nearest_batch_size(batch_size, n, lambda b: not one_sample(b, False))
                last = (f"the last batch of {n} samples by {batch_size} has 1 sample" if plan.size == 1 else
                        f"the last global batch of {n} samples by {batch_size} x {plan.size} processes gives a "
                        "process 1 sample")
                fix = f"{last}; use e.g. batch_size={good} or drop_last=True" if good else f"{last}; use drop_last=True"
            raise ValueError(f"fit: {type(m).__name__} ({name or 'the model'}) expects more than 1 value per channel "
                             f"when training, but a batch would have 1 sample: {fix}")


@contextlib.contextmanager
def _counting_steps(opt, state, where, batches):
    """Around one C++ epoch: yields the array where it counts the batches whose optimizer steps it
    applied, and advances the optimizer's step counters (and the fit's global step) by exactly
    that number, also when the epoch raises (an error in a Python layer, Ctrl-C), whose message
    then says how many batches were applied."""
    applied = np.zeros(1, np.int64)
    try:
        yield applied
    except BaseException as e:
        if hasattr(e, "add_note"):  # Python 3.11+
            e.add_note(f"{where}: {int(applied[0])} of {batches} batches were applied before this error; the parameters "
                       "and the optimizer's state (step counts) include exactly those steps")
        raise
    finally:
        if applied[0]:
            opt._advance(int(applied[0]))
        if state is not None:
            state.global_step += int(applied[0])


def _nonfinite_parameters(model):
    """' (which already contain NaN or infinity)' when they do (a step before overflowed), else ''."""
    params = model.flat_parameters()
    return " (which already contain NaN or infinity)" if params.size and _C.first_nonfinite(params) >= 0 else ""


def _loss_value(stats):
    return stats["loss_sum"] / max(stats["samples"], 1)


def _seed_and_callbacks(seed, callbacks):
    """fit's seed (None: drawn from fastnn's global generator) and its checked list of callbacks."""
    if seed is None:
        seed = int(_random.generator().integers(0, 2**63))
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"fit: callbacks must be Callback objects, got {type(cb).__name__}")
    return seed, callbacks


@_parallel.planned("fit")
@exclusive_training("fit")
@_quieted  # numpy's idle OpenBLAS workers sleep meanwhile (_blas_pool.py)
def fit(model, X, y, loss="cross_entropy", optimizer="adam", epochs=1, batch_size=None, validation_data=None,
        validation_split=0.0, shuffle=True, seed=None, callbacks=None, verbose=1, lr=None, initial_epoch=0,
        clip_grad_norm=None, clip_grad_value=None, metrics=None, class_weight=None, sample_weight=None,
        augment=None, drop_last=False, distributed=None):
    """Trains `model` on (X, y); the epoch loop runs in C++.

    The whole model trains in training mode (``model.train()`` at every epoch, as Keras and
    PyTorch Lightning do), except modules the user put in eval mode whose parameters are all
    frozen (a frozen BatchNorm keeps its running statistics, as Keras's non-trainable BatchNorm),
    and the eval-mode Dropouts of a frozen bottom that runs before any trainable layer;
    evaluate and predict run every module in eval mode. Other per-module modes
    (``model[1].eval()``) apply to ``model(x)`` and ``model.backward``.

    Like Keras's ``compile``, the model remembers the loss and metrics (and an optimizer given by
    name) of its last fit: a later ``evaluate(X, y)`` reports that loss.

    Args:
        model: a fastnn.nn.Module (Sequential of built-in layers is fastest).
        X: (N, ...) samples (converted to the model's dtype).
        y: (N,) integer labels for cross-entropy / NLL, or (N, outputs) targets.
        loss: a loss object (CrossEntropyLoss, NLLLoss, BCEWithLogitsLoss, MSELoss, L1Loss,
            SmoothL1Loss, HuberLoss, with their options) or a name, fastnn's or Keras's:
            "sparse_categorical_crossentropy" / "categorical_crossentropy" (labels / one-hot rows),
            "binary_crossentropy", "mean_squared_error" / "mse", "mean_absolute_error" / "mae",
            "huber". fastnn's losses take the model's logits (no final Softmax / Sigmoid).
        optimizer: an Optimizer over model.parameters(), or a name ("adam", "sgd", ...; with `lr`); the
            model keeps an optimizer made from a name, so later fit calls with the same name and lr
            continue its state (as a compiled Keras model does).
        epochs: the index of the last epoch (Keras): epochs - initial_epoch epochs are trained.
        batch_size: batch_size=N (or larger, as in Keras) is batch gradient descent, 1 single-sample SGD.
            Default 32; with a second-order optimizer (LBFGS, ...) all of the data (see train/full_batch.py).
        validation_data: (X_val, y_val), or validation_split: the last fraction of (X, y) (a float,
            as Keras), or a ValidationSplit(fraction, shuffle=True, stratify=True, seed=0).
        shuffle, seed: the sample order of epoch e is a function of (seed, e) only.
        callbacks: Callback objects (EarlyStopping, ModelCheckpoint, ...).
        verbose: 0 silent, 1 a progress bar per epoch on a terminal (one line per epoch elsewhere),
            2 one line per epoch; both on sys.stdout.
        initial_epoch: epoch to start at (resuming; shuffling and dropout continue as if never stopped).
        clip_grad_norm / clip_grad_value: gradient clipping before every step.
        metrics: names ("accuracy", "top_k_accuracy" (k=5) or "top_3_accuracy", "mae", "mse"),
            computed in the C++ loop; default: accuracy for classification losses.
        class_weight: {class: weight} (Keras): each sample's loss is scaled by its class's weight.
        sample_weight: (N,) weights >= 0 of the samples' losses; the batch loss is
            sum(w_i loss_i) / batch size, Keras's weighted mean (with class_weight, the product).
        augment: a fastnn.augment transform (e.g. Compose([RandomShift(2), RandomHorizontalFlip()])),
            applied to every training minibatch in the C++ loop, drawn from (seed, step); never to
            validation data. Flat X needs Compose(..., shape=(C, H, W)).
        drop_last: True skips each epoch's last batch when it is incomplete (torch's
            DataLoader(drop_last=True)); the samples it would have held differ between shuffled
            epochs. Validation, evaluate and predict use every sample.
        distributed: None (one process) or a fastnn.distributed.DataParallel: every rank of an MPI
            job runs the same fit on the same data; each global batch (batch_size per rank) is
            split between the ranks, whose gradients are averaged (see fastnn.distributed).
    Returns:
        History with per-epoch loss, the metrics, val_loss, val_<metric>, lr, seconds.
    """
    epochs = _v.check_int(epochs, "fit", "epochs", 0)
    initial_epoch = _v.check_int(initial_epoch, "fit", "initial_epoch", 0)
    batch_size = None if batch_size is None else _check_batch_size(batch_size, "fit")
    if not isinstance(validation_split, ValidationSplit):
        validation_split = _v.check_real(validation_split, "fit", "validation_split", 0, 1, high_open=True)
    shuffle = _v.check_bool(shuffle, "fit", "shuffle")
    drop_last = _v.check_bool(drop_last, "fit", "drop_last")
    seed = None if seed is None else _v.check_seed(seed, "fit")
    verbose = _v.check_choice(verbose, "fit", "verbose", (0, 1, 2))
    lr = None if lr is None else _v.check_real(lr, "fit", "lr", 0)
    clip_grad_norm = _check_clip(clip_grad_norm, "clip_grad_norm")
    clip_grad_value = _check_clip(clip_grad_value, "clip_grad_value")
    if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple, type(None))):
        raise TypeError(f"fit: callbacks must be a list of Callback objects, got {type(callbacks).__name__}")
    loss_obj, kernel = as_loss(loss)
    metric_set = Metrics(metrics, kernel)
    options = _loss_options(loss_obj, metric_set)
    cpp_model = as_cpp_model(model)
    _warn_softmax_output(model, kernel)
    X = check_X(X, cpp_model)
    width = output_width(cpp_model, X)
    ignore = getattr(loss_obj, "ignore_index", -100)
    y = check_y(y, kernel, len(X), width, cpp_model, ignore_index=ignore)
    weights = _sample_weights(sample_weight, class_weight, y, len(X), kernel)
    X, y, weights, val = _split(X, y, validation_data, validation_split, weights)
    if val is not None:
        Xv = check_X(val[0], cpp_model, "validation X")
        output_width(cpp_model, Xv, "validation X")  # a wrong shape must fail now, not after an epoch of training
        yv = check_y(val[1], kernel, len(Xv), width, cpp_model, "validation y", ignore_index=ignore)
    if isinstance(optimizer, _optim.SecondOrderOptimizer) and distributed is not _parallel.LOCAL:
        raise ValueError(f"fit: distributed training takes a first-order optimizer, got {type(optimizer).__name__}")
    if isinstance(optimizer, _optim.SecondOrderOptimizer):  # one step per epoch, evaluated in C++: full_batch.py
        unsupported = [k for k, v in (("augment", augment), ("sample_weight", weights), ("class_weight", class_weight),
                                      ("metrics", metrics)) if v is not None]
        if unsupported:
            raise ValueError(f"fit: {', '.join(unsupported)} not supported with {type(optimizer).__name__} "
                             "(a full-batch second-order step); use a first-order optimizer")
        object.__setattr__(model, "_fit_compiled", {"loss": loss_obj, "metrics": None})
        return _fit_second_order(model, cpp_model, X, y, kernel, loss_obj, optimizer, lr, epochs, batch_size,
                                 None if val is None else (Xv, yv), width, shuffle, seed, callbacks, verbose,
                                 initial_epoch, clip_grad_norm, clip_grad_value, drop_last)
    batch_size = 32 if batch_size is None else batch_size
    batch_size = min(batch_size, len(X))  # larger than the data: one batch of all of it (Keras)
    augment_spec, augment_shape = _augment.for_fit(augment, X.shape[1:])
    if epochs * math.ceil(len(X) / batch_size) >= _v.SEED_LIMIT:
        raise ValueError(f"fit: epochs = {epochs} epochs overflow the 64-bit step counter")
    distributed.prepare_model(cpp_model)
    opt = _as_optimizer(optimizer, model, cpp_model, lr)
    object.__setattr__(model, "_fit_compiled", {"loss": loss_obj, "metrics": metrics})
    params = list(cpp_model.parameters())
    grads = cpp_model.flat_grad() if params else None
    clip_segments = _optim.segment_table(params) if (clip_grad_norm or clip_grad_value) and params else None
    seed, callbacks = _seed_and_callbacks(seed, callbacks)
    seed = distributed.start(cpp_model, opt, len(X), batch_size, seed)
    verbose, callbacks = distributed.output(verbose, callbacks)
    terminate_on_nan = any(isinstance(cb, TerminateOnNaN) for cb in callbacks)

    batches_per_epoch = distributed.batches(len(X), batch_size, drop_last)
    if batches_per_epoch == 0:  # only with several processes: one process's batch_size is at most len(X)
        raise ValueError(f"fit: drop_last=True drops every batch: {len(X)} samples make no full global batch of "
                         f"{batch_size} x {distributed.size} processes; lower batch_size")
    _check_batch_statistics(cpp_model, len(X), batch_size, drop_last, distributed)
    keep_eval = _frozen_eval_modules(cpp_model)
    distributed.check_batches(cpp_model, len(X), batch_size, drop_last, keep_eval)
    state = FitState()
    history = History()
    for cb in callbacks:
        cb.set_context(cpp_model, opt, state)
        cb.on_train_begin({})
    for epoch in range(initial_epoch, epochs):
        state.epoch = epoch
        state.global_step = epoch * batches_per_epoch
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        start = time.perf_counter()
        desc = f"epoch {epoch + 1}/{epochs}"
        bar = make_bar(batches_per_epoch, desc, verbose)
        steps = opt._deferred_steps() if params else []
        _train_mode(cpp_model, keep_eval)
        with _counting_steps(opt, state, f"fit: epoch {epoch + 1}", batches_per_epoch) as applied:
            stats = _C.train_epoch(
                cpp_model._layer, X, y, kernel, loss_obj.reduction, grads, steps, int(batch_size), bool(shuffle),
                int(seed), int(epoch), int(state.global_step), float(clip_grad_norm or 0.0),
                float(clip_grad_value or 0.0), clip_segments,
                (lambda done, total, running: bar.update_to(done, _running_logs(
                    distributed.running(running), metric_set, width))) if bar else None,
                applied,
                loss_options=options, sample_weight=weights, width=width,
                augment=augment_spec, augment_shape=augment_shape, drop_last=drop_last,
                **distributed.epoch_args(grads, loss_obj.reduction))
        stats = distributed.epoch_stats(stats)
        if stats["nonfinite_batch"] >= 0:
            if bar:
                bar.close("stopped: non-finite loss")
            message = (f"fit: the loss became NaN or infinite at epoch {epoch + 1}, batch {stats['nonfinite_batch'] + 1}; "
                       f"the parameters are those before that batch{_nonfinite_parameters(cpp_model)} "
                       "(lower the learning rate or clip gradients)")
            if terminate_on_nan:
                break
            raise FloatingPointError(message)
        logs = {"loss": _loss_value(stats), **metric_set.values(stats, width)}
        if val is not None:
            vstats = _evaluate_stats(distributed, cpp_model, Xv, yv, kernel, loss_obj.reduction,
                                     max(int(batch_size), 256), options, None, width)
            logs["val_loss"] = _loss_value(vstats)
            logs.update({f"val_{k}": v for k, v in metric_set.values(vstats, width).items()})
        logs["lr"] = float(opt.param_groups[0]["lr"])
        logs["seconds"] = time.perf_counter() - start
        summary = " ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in ("lr", "seconds"))
        summary += f" ({logs['seconds']:.2f}s)"
        if bar:
            bar.close(summary)
        elif verbose:
            write_line(f"{desc}: {summary}")
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        history.append(epoch, logs)
        if state.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end({})
    distributed.finish()
    return history


def _running_logs(running, metric_set, width):
    return {"loss": _loss_value(running), **metric_set.values(running, width)}


def _evaluate_stats(plan, cpp_model, X, y, kernel, reduction, batch_size, options, weights, width):
    """_C.evaluate's statistics of (X, y): of this process's rows, reduced over the plan's processes."""
    rows = plan.rows(len(X))
    Xs, ys, ws = X[rows], y[rows], None if weights is None else weights[rows]
    stats = _parallel.EMPTY_STATS if len(Xs) == 0 else _C.evaluate(
        cpp_model._layer, Xs, ys, kernel, reduction, min(batch_size, len(Xs)), loss_options=options,
        sample_weight=ws, width=width)
    return plan.reduce_stats(stats, "evaluate")


def _fit_second_order(model, cpp_model, X, y, kernel, loss_obj, optimizer, lr, epochs, batch_size, val, width,
                      shuffle, seed, callbacks, verbose, initial_epoch, clip_grad_norm, clip_grad_value, drop_last):
    """fit() with a second-order optimizer: the checks that differ, then train/full_batch.py."""
    if clip_grad_norm or clip_grad_value:
        raise ValueError(f"fit: gradient clipping does not apply to {type(optimizer).__name__} (its line search "
                         "needs the true gradient)")
    if kernel not in _FULL_BATCH_KERNELS or loss_obj._repr_options():  # options other than the defaults
        raise ValueError(f"fit: {type(optimizer).__name__} takes the plain {', '.join(_FULL_BATCH_KERNELS)} losses "
                         f"(no weight, label_smoothing, ignore_index, pos_weight), got {loss_obj!r}")
    opt = _as_optimizer(optimizer, model, cpp_model, lr)
    seed, callbacks = _seed_and_callbacks(seed, callbacks)
    _check_batch_statistics(cpp_model, len(X), min(batch_size or len(X), len(X)), drop_last)
    return _full_batch.fit_full_batch(model, cpp_model, X, y, kernel, loss_obj, opt, epochs, batch_size, val, width,
                                      shuffle, seed, callbacks, verbose, initial_epoch, FitState(), _loss_and_accuracy,
                                      drop_last)


def _loss_and_accuracy(stats, kernel, width):
    """(loss, accuracy or None) of an evaluation's sums, for the second-order branch's logs."""
    return _loss_value(stats), Metrics(None, kernel).values(stats, width).get("accuracy")


@_parallel.planned("evaluate")
@_quieted
def evaluate(model, X, y, loss=None, batch_size=256, metrics=None, sample_weight=None, verbose=0, distributed=None):
    """Loss and metrics of `model` on (X, y) in eval mode: {"loss": ..., "accuracy": ...}.

    loss and metrics default to those of the model's last fit (Keras's compile semantics); a model
    never fitted needs loss= unless its targets are integer labels (cross-entropy). sample_weight
    weighs the samples' losses as in fit. verbose=1 prints the result on one line.
    distributed: a fastnn.distributed.DataParallel: each rank evaluates its share of the samples,
    and every rank returns the result over all of them.
    """
    batch_size = _check_batch_size(batch_size, "evaluate")
    verbose = _v.check_choice(verbose, "evaluate", "verbose", (0, 1, 2))
    loss_obj, kernel = _remembered_loss(model, loss, y, "evaluate")
    if metrics is None and loss is None and model.__dict__.get("_fit_compiled") is not None:
        metrics = model.__dict__["_fit_compiled"]["metrics"]
    metric_set = Metrics(metrics, kernel, "evaluate")
    options = _loss_options(loss_obj, metric_set, "evaluate")
    cpp_model = as_cpp_model(model)
    X = check_X(X, cpp_model)
    width = output_width(cpp_model, X)
    y = check_y(y, kernel, len(X), width, cpp_model, ignore_index=getattr(loss_obj, "ignore_index", -100))
    weights = _sample_weights(sample_weight, None, y, len(X), kernel)
    stats = _evaluate_stats(distributed, cpp_model, X, y, kernel, loss_obj.reduction, batch_size, options, weights,
                            width)
    result = {"loss": _loss_value(stats), **metric_set.values(stats, width)}
    if verbose:
        write_line("evaluate: " + " ".join(f"{k} {v:.4f}" for k, v in result.items()))
    return result


@_parallel.planned("predict")
@_quieted
def predict(model, X, batch_size=256, distributed=None):
    """Model outputs for X in eval mode, computed in batches in C++.

    distributed: a fastnn.distributed.DataParallel: each rank predicts its share of the samples,
    and every rank returns all the outputs, in order.
    """
    batch_size = _check_batch_size(batch_size, "predict")
    cpp_model = as_cpp_model(model)
    X = _v.as_array(X, "X")
    if X.ndim >= 2 and X.shape[0] == 0:  # an empty batch: an empty result of the output's shape
        one = np.zeros((1,) + X.shape[1:], cpp_model.dtype)
        return np.zeros((0,) + _C.predict(cpp_model._layer, one, 1).shape[1:], cpp_model.dtype)
    X = check_X(X, cpp_model)
    output_width(cpp_model, X)  # as evaluate: a sample shape the model does not take is an error naming X's shape
    rows = X[distributed.rows(len(X))]
    if len(rows) == 0:
        local = np.zeros((0,) + _C.predict(cpp_model._layer, X[:1], 1).shape[1:], cpp_model.dtype)
    else:
        local = _C.predict(cpp_model._layer, rows, min(batch_size, len(rows)))
    return distributed.gather_rows(local, "predict")


@exclusive_training("train_step")
@_quieted  # numpy's idle OpenBLAS workers sleep meanwhile (_blas_pool.py)
def train_step(model, x, y, loss, optimizer, seed=0, step=0):
    """One minibatch (forward, loss, backward, optimizer step) in one C++ call; returns the loss.

    For people who write their own loop. The model is put in training mode (except modules in
    eval mode whose parameters are all frozen, as in fit).
    """
    seed, step = _v.check_seed(seed, "train_step"), _v.check_seed(step, "train_step", "step")
    loss_obj, kernel = as_loss(loss, "train_step")
    options = _loss_options(loss_obj, None, "train_step")
    cpp_model = as_cpp_model(model)
    optimizer = _as_optimizer(optimizer, model, cpp_model, None, "train_step")
    x = check_X(x, cpp_model, "x")
    width = output_width(cpp_model, x)
    y = check_y(y, kernel, len(x), width, cpp_model, ignore_index=getattr(loss_obj, "ignore_index", -100))
    params = list(cpp_model.parameters())
    _train_mode(cpp_model, _frozen_eval_modules(cpp_model))
    with _counting_steps(optimizer, None, "train_step", 1) as applied:
        stats = _C.train_epoch(cpp_model._layer, x, y, kernel, loss_obj.reduction,
                               cpp_model.flat_grad() if params else None, optimizer._deferred_steps() if params else [],
                               len(x), False, int(seed), 0, int(step), applied=applied, loss_options=options,
                               width=width)
    if stats["nonfinite_batch"] >= 0:
        raise FloatingPointError("train_step: the loss is NaN or infinite; the parameters were not changed")
    return stats["loss_sum"] / len(x) if loss_obj.reduction == "mean" else stats["loss_sum"]
