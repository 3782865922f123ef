"""One trainer per model: fit and train_step claim every module of the model for their whole call.

The C++ layers serialize concurrent calls (inference from several threads is correct), but
training interleaved from two threads would mix two optimizers' steps and the activations of
one thread's forward with the other's backward. A fit spans many C++ calls (one per epoch, with
callbacks between), so the claim is taken here, in Python, and a second trainer fails at once.
The thread that holds a claim may claim again (a callback calling train_step on the same model).
"""

import functools
import threading

from ..nn.module import Module

_lock = threading.Lock()  # guards the _trainer attributes of every module


def _all_modules(model):
    seen, stack, out = set(), [model], []
    while stack:
        m = stack.pop()
        if id(m) not in seen:
            seen.add(id(m))
            out.append(m)
            stack.extend(m._modules.values())
    return out


def claim(model, op):
    """Claims `model` and its submodules for training by this thread (returns them, for release);
    RuntimeError if another thread's fit or train_step holds any of them."""
    me = threading.get_ident()
    modules = _all_modules(model)
    with _lock:
        for m in modules:
            if m.__dict__.get("_trainer", (me,))[0] != me:
                raise RuntimeError(f"{op}: the model is being trained by another thread; train a model in one thread at "
                                   "a time (predict and evaluate may run alongside; train copies to train in parallel)")
        for m in modules:
            m.__dict__["_trainer"] = (me, m.__dict__.get("_trainer", (me, 0))[1] + 1)
    return modules


def release(modules):
    with _lock:
        for m in modules:
            me, count = m.__dict__["_trainer"]
            if count == 1:
                del m.__dict__["_trainer"]
            else:
                m.__dict__["_trainer"] = (me, count - 1)


def exclusive_training(op):
    """Decorator: the function (whose first argument is the model) runs with the model claimed."""

    def wrap(f):
        @functools.wraps(f)
        def run(model, *args, **kwargs):
            if not isinstance(model, Module):  # f raises its own TypeError
                return f(model, *args, **kwargs)
            modules = claim(model, op)
            try:
                return f(model, *args, **kwargs)
            finally:
                release(modules)

        return run

    return wrap
