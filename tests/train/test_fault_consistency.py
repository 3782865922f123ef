"""An epoch that stops part way (an error in a Python layer, Ctrl-C, a non-finite loss) leaves the
parameters and the optimizer's state consistent: both include exactly the batches applied, which
the error says. A batch that BatchNorm cannot train on is refused before any update.
"""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn._config import _C

BATCH = 16
BATCHES = 10


class Fault(nn.Module):
    """Identity that misbehaves at its `at`-th training batch: raises `error` in forward or
    backward, or returns infinity from forward."""

    def __init__(self, at=None, where="backward", error=RuntimeError):
        super().__init__()
        self.at, self.where, self.error, self.batches = at, where, error, 0

    def forward(self, x):
        if self.training:
            self.batches += 1
            if self.batches == self.at and self.where == "forward":
                raise self.error("fault in forward")
            if self.batches == self.at and self.where == "inf":
                return np.full_like(x, np.inf)
        return x.copy()

    def backward(self, g):
        if self.batches == self.at and self.where == "backward":
            raise self.error("fault in backward")
        return g.copy()


def make_model(fault):
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3), fault)


def data(n=BATCH * BATCHES):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 8)).astype(np.float32), rng.integers(0, 3, n)


OPTIMIZERS = {
    "adam": lambda p: optim.Adam(p, lr=0.01),
    "sgd-momentum": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
    "rmsprop": lambda p: optim.RMSprop(p, lr=0.01),
    "adagrad": lambda p: optim.Adagrad(p, lr=0.1),
}


def reference(steps, make_opt, **kwargs):
    """The model and optimizer after exactly `steps` batches of the same fit (no fault)."""
    model = make_model(Fault())
    opt = make_opt(model.parameters())
    X, y = data()
    if steps:
        model.fit(X[: steps * BATCH], y[: steps * BATCH], optimizer=opt, batch_size=BATCH, shuffle=False, verbose=0,
                  seed=5, **kwargs)
    return model, opt


def assert_same_state(model, opt, ref_model, ref_opt):
    np.testing.assert_array_equal(model.flat_parameters(), ref_model.flat_parameters())
    assert set(opt.state) == set(ref_opt.state)
    for key in opt.state:
        np.testing.assert_array_equal(opt.state[key], ref_opt.state[key], err_msg=key)


@pytest.mark.parametrize("clip", [{}, {"clip_grad_norm": 0.5}, {"clip_grad_value": 0.01}], ids=["noclip", "norm", "value"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("where", ["forward", "backward", "inf"])
def test_a_fault_at_batch_5_leaves_exactly_4_steps(where, name, clip):
    model = make_model(Fault(at=5, where=where))
    opt = OPTIMIZERS[name](model.parameters())
    X, y = data()
    error = FloatingPointError if where == "inf" else RuntimeError
    with pytest.raises(error) as info:
        model.fit(X, y, optimizer=opt, batch_size=BATCH, shuffle=False, verbose=0, seed=5, **clip)
    ref_model, ref_opt = reference(4, OPTIMIZERS[name], **clip)
    assert_same_state(model, opt, ref_model, ref_opt)
    assert list(opt.state["step"]) == [4]
    if where == "inf":
        assert "batch 5; the parameters are those before that batch (" in str(info.value)
    else:
        notes = "\n".join(getattr(info.value, "__notes__", []))
        if sys.version_info >= (3, 11):
            assert f"epoch 1: 4 of {BATCHES} batches were applied" in notes


def test_training_continues_from_the_applied_steps():
    # After the fault, fitting the rest gives what fitting everything without a fault gives.
    model = make_model(Fault(at=5, where="forward"))
    opt = optim.Adam(model.parameters(), lr=0.01)
    X, y = data()
    with pytest.raises(RuntimeError):
        model.fit(X, y, optimizer=opt, batch_size=BATCH, shuffle=False, verbose=0, seed=5)
    model[3].at = None
    model.fit(X[4 * BATCH :], y[4 * BATCH :], optimizer=opt, batch_size=BATCH, shuffle=False, verbose=0, seed=5)
    ref_model, ref_opt = reference(BATCHES, OPTIMIZERS["adam"])
    np.testing.assert_allclose(model.flat_parameters(), ref_model.flat_parameters(), rtol=0, atol=1e-6)
    assert list(opt.state["step"]) == [BATCHES]


def test_keyboard_interrupt_from_a_python_layer():
    model = make_model(Fault(at=5, where="backward", error=KeyboardInterrupt))
    opt = optim.Adam(model.parameters(), lr=0.01)
    X, y = data()
    try:
        model.fit(X, y, optimizer=opt, batch_size=BATCH, shuffle=False, verbose=0, seed=5)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("no KeyboardInterrupt")
    assert_same_state(model, opt, *reference(4, OPTIMIZERS["adam"]))


def test_keyboard_interrupt_from_a_callback():
    class Stop(fastnn.train.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                raise KeyboardInterrupt

    model = make_model(Fault())
    opt = optim.Adam(model.parameters(), lr=0.01)
    X, y = data()
    try:
        model.fit(X[: 2 * BATCH], y[: 2 * BATCH], optimizer=opt, epochs=5, batch_size=BATCH, shuffle=False,
                  verbose=0, seed=5, callbacks=[Stop()])
    except KeyboardInterrupt:
        pass
    assert list(opt.state["step"]) == [4]  # 2 epochs of 2 batches


def test_train_step_counts_only_an_applied_step():
    model = make_model(Fault(at=2, where="backward"))
    opt = optim.Adam(model.parameters(), lr=0.01)
    X, y = data()
    fastnn.train_step(model, X[:BATCH], y[:BATCH], "cross_entropy", opt)
    before = model.flat_parameters().copy()
    with pytest.raises(RuntimeError):
        fastnn.train_step(model, X[BATCH : 2 * BATCH], y[BATCH : 2 * BATCH], "cross_entropy", opt)
    np.testing.assert_array_equal(model.flat_parameters(), before)
    assert list(opt.state["step"]) == [1]


def test_nan_message_says_when_the_parameters_already_overflowed():
    # A huge learning rate: a finite loss whose step makes the parameters infinite, then a NaN loss.
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    X, y = data()
    with pytest.raises(FloatingPointError, match="already contain NaN or infinity"):
        model.fit(X * 1e3, y, optimizer=optim.SGD(model.parameters(), lr=3e38), batch_size=BATCH, verbose=0)


def test_ctrl_c_stops_an_epoch_promptly_with_consistent_state():
    # A real SIGINT while the epoch runs in C++ without the GIL: it stops at a batch boundary within
    # about 0.1 s (not at the end of the epoch), with exactly the applied steps counted.
    code = textwrap.dedent("""
        import os, signal, threading
        import numpy as np
        import fastnn
        from fastnn import nn, optim
        def make():
            fastnn.manual_seed(0)
            return nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
        rng = np.random.default_rng(0)
        X = rng.standard_normal((1_000_000, 16)).astype(np.float32)
        y = rng.integers(0, 4, len(X))
        class Interrupt(fastnn.train.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs):
                threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        model = make()
        opt = optim.Adam(model.parameters(), lr=1e-3)
        try:
            model.fit(X, y, optimizer=opt, batch_size=4, shuffle=False, verbose=0, seed=1, callbacks=[Interrupt()])
        except KeyboardInterrupt:
            pass
        else:
            raise SystemExit("no KeyboardInterrupt")
        k = int(opt.state["step"][0])
        assert 0 < k < len(X) // 4, k
        ref = make()
        ref_opt = optim.Adam(ref.parameters(), lr=1e-3)
        ref.fit(X[: 4 * k], y[: 4 * k], optimizer=ref_opt, batch_size=4, shuffle=False, verbose=0, seed=1)
        assert np.array_equal(model.flat_parameters(), ref.flat_parameters())
        for key in opt.state:
            assert np.array_equal(opt.state[key], ref_opt.state[key]), key
        print("stopped after", k, "batches")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def bn_model(spatial=False):
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 12), nn.BatchNorm1d(3 if spatial else 12), nn.ReLU(), nn.Linear(12, 3)) \
        if not spatial else nn.Sequential(nn.BatchNorm1d(2), nn.Flatten(), nn.Linear(8, 3))


@pytest.mark.parametrize("n, batch_size", [(33, 32), (17, 1), (1, 8)])
def test_a_batchnorm_batch_of_one_sample_is_refused_before_any_update(n, batch_size):
    model = bn_model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    X, y = data(n)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"BatchNorm1d \(1\) expects more than 1 value per channel when training") as info:
        model.fit(X, y, optimizer=opt, batch_size=batch_size, verbose=0)
    if n == 33:
        assert "use e.g. batch_size=" in str(info.value)
        good = int(re.search(r"batch_size=(\d+) or drop_last=True", str(info.value)).group(1))
        model.fit(X, y, optimizer=optim.Adam(model.parameters()), batch_size=good, verbose=0)  # the suggestions work
        model.fit(X, y, optimizer=optim.Adam(model.parameters()), batch_size=batch_size, drop_last=True, verbose=0)
        model = bn_model()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert opt.state["step"].sum() == 0


def test_a_batchnorm_over_positions_trains_on_one_sample():
    # (N, C, L) input: one sample still has L values per channel, as in PyTorch.
    model = bn_model(spatial=True)
    X = np.random.default_rng(0).standard_normal((33, 2, 4)).astype(np.float32)
    model.fit(X, np.zeros(33, np.int64), batch_size=32, verbose=0)


def test_a_batch_of_one_in_train_step_changes_nothing():
    model = bn_model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    X, y = data(1)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fastnn.train_step(model, X, y, "cross_entropy", opt)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert opt.state["step"].sum() == 0


def test_the_applied_counter_must_be_written_in_place():
    model = make_model(Fault())
    X, y = data(BATCH)
    with pytest.raises(ValueError, match="applied must be a writeable int64 array"):
        _C.train_epoch(model._layer, X, y, "cross_entropy", "mean", model.flat_grad(), [], BATCH, False, 0, 0,
                       0, applied=np.zeros(1, np.int32))
