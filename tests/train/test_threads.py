"""One model used from several Python threads (issue 7, crash 5).

Inference from several threads must give, bit for bit, what one thread gives; training one model
from two threads at once is a RuntimeError. Each case runs in a subprocess, so that a crash (the
double free or segfault these used to give) is a failing test and not a dead test run.
"""

import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import threading
import numpy as np
import fastnn
from fastnn import nn

def run_threads(fns):
    errors = []
    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:
                errors.append(e)
        return run
    threads = [threading.Thread(target=wrap(fn)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a thread hangs"
    if errors:
        raise errors[0]

def small_model():
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.BatchNorm1d(64), nn.Linear(64, 32), nn.Tanh(),
                         nn.Linear(32, 10))

rng = np.random.default_rng(0)
X = rng.standard_normal((1000, 16)).astype(np.float32)
y = rng.integers(0, 10, 1000)
"""


def run(code, timeout=300):
    """Runs PRELUDE + code in a fresh interpreter; fails on a crash, an error or a hang."""
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"returncode {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_predict_and_evaluate_from_four_threads_match_one_thread():
    run("""
        model = small_model()
        model.fit(X, y, epochs=1, verbose=0, seed=1)  # trained running statistics
        want_p = model.predict(X, batch_size=100)
        want_e = model.evaluate(X, y)
        def worker():
            for _ in range(15):
                assert np.array_equal(model.predict(X, batch_size=100), want_p)
                assert model.evaluate(X, y) == want_e
        run_threads([worker] * 4)
        """)


def test_calling_the_model_from_four_threads_matches_one_thread():
    # Each thread has its own input: a shared workspace would mix one thread's output into another's.
    run("""
        model = small_model()
        inputs = [rng.standard_normal((50 + 7 * i, 16)).astype(np.float32) for i in range(4)]
        for mode in ("train", "eval"):
            getattr(model, mode)()
            want = [model(x) for x in inputs]  # training mode: BatchNorm uses the batch's statistics
            def worker(i):
                return lambda: [np.testing.assert_array_equal(model(inputs[i]), want[i]) for _ in range(40)]
            run_threads([worker(i) for i in range(4)])
            # and a submodule called directly while the whole model runs in other threads
            sub = model[0]
            want_sub = sub(inputs[0])
            run_threads([worker(1), worker(2), lambda: [np.testing.assert_array_equal(sub(inputs[0]), want_sub)
                                                        for _ in range(40)]])
        """)


def test_a_python_written_model_predicted_from_four_threads():
    # fit/predict wrap a Python-written module anew at each call; its training flag, switched for
    # the call, must come back, and calls must not interleave.
    run("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = small_model()
            def forward(self, x):
                return self.body(x * (0.5 if self.training else 1.0))
            def backward(self, g):
                return self.body.backward(g) * (0.5 if self.training else 1.0)
        net = Net()
        want = net.predict(X, batch_size=16)
        run_threads([lambda: [np.testing.assert_array_equal(net.predict(X, batch_size=16), want)
                              for _ in range(20)]] * 4)
        assert net.training is True
        """)


def test_predict_of_a_python_written_model_runs_its_submodules_in_eval_mode():
    # Eval mode is imposed on the calls of the predicting thread only: the modules' own modes (a
    # Dropout's, a BatchNorm's) do not change, for other threads or after an error.
    run("""
        other = []
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.drop, self.bn, self.fail = nn.Dropout(0.5), nn.BatchNorm1d(16), False
            def forward(self, x):
                if self.fail:
                    raise KeyError("no")
                t = threading.Thread(target=lambda: other.append((self.training, self.drop.training)))
                t.start()
                t.join()
                return self.bn(self.drop(x))
            def backward(self, g):
                return self.drop.backward(self.bn.backward(g))
        net = Net()
        net.bn.eval()
        np.testing.assert_array_equal(net.predict(X), net.bn.eval()(X))  # no dropout, running statistics
        assert other and set(other) == {(True, True)}, other
        assert net.training and net.drop.training and not net.bn.training
        net.fail = True
        try:
            net.predict(X)
        except KeyError:
            pass
        assert net.training and net.drop.training and not net.bn.training
        """)


def test_fit_in_one_thread_while_others_predict():
    # Predictions while fit runs see the parameters between two epochs, never half an epoch:
    # every one equals the prediction of one of the states fit passed through at an epoch end.
    run("""
        model = small_model()
        states = [model.state_dict()]
        class Snapshot(fastnn.train.callbacks.Callback):
            def on_epoch_end(self, epoch, logs):
                states.append(self.model.state_dict())
        seen = []
        done = threading.Event()
        def trainer():
            try:
                model.fit(X, y, epochs=6, batch_size=32, verbose=0, seed=3, callbacks=[Snapshot()])
            finally:
                done.set()
        def predictor():
            while not done.is_set():
                p = model.predict(X[:200])
                assert p.shape == (200, 10) and np.isfinite(p).all()
                seen.append(p)
        run_threads([trainer, predictor, predictor, predictor])
        reference = small_model()
        possible = []
        for s in states:
            reference.load_state_dict(s)
            possible.append(reference.predict(X[:200]))
        for p in seen:
            assert any(np.array_equal(p, q) for q in possible), "a prediction from a half-updated model"
        print(len(seen), "predictions during fit")
        """)


def test_changing_the_dtype_while_other_threads_predict():
    # .double()/.float() move the parameters to new buffers (megabytes: freed memory is unmapped)
    # while calls still run the old layers, which keep their buffers alive.
    run("""
        fastnn.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
        want = {np.dtype(np.float32): model.predict(X)}
        want[np.dtype(np.float64)] = model.double().predict(X)
        model.float()
        done = threading.Event()
        def switch():
            try:
                for _ in range(30):
                    model.double()
                    model.float()
            finally:
                done.set()
        def predictor():
            while not done.is_set():
                try:
                    p = model.predict(X)
                except TypeError as e:  # the dtype changed between the data's conversion and the call
                    assert "are not float" in str(e), e
                    continue
                np.testing.assert_array_equal(p, want[p.dtype])
        run_threads([switch, predictor, predictor])
        """)


def test_two_fits_of_one_model_at_once_raise():
    # The first fit waits inside its first epoch's callback until the second attempt is over.
    run("""
        model = small_model()
        started, tried = threading.Event(), threading.Event()
        class Hold(fastnn.train.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs):
                started.set()
                assert tried.wait(60)
        def first():
            model.fit(X, y, epochs=2, verbose=0, callbacks=[Hold()])
        outcome = []
        def second():
            assert started.wait(60)
            for attempt in (lambda: model.fit(X, y, epochs=1, verbose=0),
                            lambda: fastnn.train_step(model[5], X[:8, :32].repeat(2, 1), X[:8, :10], "mse",
                                                      fastnn.optim.SGD(model[5].parameters(), lr=0.1)),
                            lambda: fastnn.fit(model, X, y, verbose=0)):
                try:
                    attempt()
                    outcome.append("no error")
                except RuntimeError as e:
                    outcome.append(str(e))
            tried.set()
        run_threads([first, second])
        assert len(outcome) == 3, outcome
        for text in outcome:
            assert "being trained by another thread" in text, outcome
        # once the first fit is over, the model trains again
        model.fit(X, y, epochs=1, verbose=0)
        """)


def test_backward_after_another_threads_forward_raises():
    # Hand-written training: thread A's backward must not use the activations of thread B's forward.
    run("""
        model = small_model()
        x = X[:32]
        a_forward, b_forward = threading.Event(), threading.Event()
        outcome = []
        def a():
            model(x)
            a_forward.set()
            assert b_forward.wait(60)
            try:
                model.backward(np.ones((32, 10), np.float32))
                outcome.append("no error")
            except RuntimeError as e:
                outcome.append(str(e))
        def b():
            assert a_forward.wait(60)
            model(X[32:48])
            b_forward.set()
        run_threads([a, b])
        assert "last forward ran in another thread" in outcome[0], outcome
        """)


def test_a_layer_calling_its_own_model_again_raises_instead_of_deadlocking():
    run("""
        holder = {}
        class Loop(nn.Module):
            def forward(self, x):
                return fastnn.predict(holder["model"], x)
            def backward(self, g):
                return g
        model = nn.Sequential(nn.Linear(16, 16), Loop())
        holder["model"] = model
        try:
            model.predict(X[:4])
        except RuntimeError as e:
            assert "already running in this thread" in str(e), e
        else:
            raise AssertionError("no error")
        np.testing.assert_array_equal(model[0](X[:4]).shape, (4, 16))  # the locks were released
        """)


@pytest.mark.parametrize("since", ["predict", "model"])
def test_backward_after_another_call_ran_the_layers_raises(since):
    # predict, or the whole model's forward, ran the layers on other batches since the forward a
    # backward would belong to: it must not use their activations (the shapes may even match).
    run(f"""
        model = small_model()
        first = model if "{since}" == "predict" else model[0]
        first(X[:64])
        if "{since}" == "predict":
            model.predict(X[:500], batch_size=500)
        else:
            model(X[:500])
        try:
            first.backward(np.ones((64, 10 if "{since}" == "predict" else 64), np.float32))
        except ValueError as e:
            assert "backward called before forward" in str(e), e
        else:
            raise AssertionError("backward used another call's activations")
        """)
