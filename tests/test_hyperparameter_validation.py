"""Every public constructor and function refuses a hyperparameter it would otherwise ignore,
truncate or misuse, with an error naming the function and the argument; NumPy scalars are
accepted like Python numbers."""

import math
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _validate as v
from fastnn import nn, optim
from fastnn.optim import lr_scheduler as S
from fastnn.train import callbacks as C
from tests.isolation import child_env


def model():
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def data(n=10):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.integers(0, 2, n)


def fit(**kwargs):
    X, y = data()
    return fastnn.fit(model(), X, y, **{"verbose": 0, **kwargs})


def an_optimizer():
    return optim.SGD(model().parameters(), lr=0.1)


# (callable, exception, message regex): each one used to be accepted, truncated, ignored or a bare error
BAD = {
    "fit clip_grad_norm=-1": (lambda: fit(clip_grad_norm=-1), ValueError, r"fit: clip_grad_norm must be positive"),
    "fit clip_grad_norm=nan": (lambda: fit(clip_grad_norm=float("nan")), ValueError, r"fit: clip_grad_norm must be positive"),
    "fit clip_grad_value=0": (lambda: fit(clip_grad_value=0), ValueError, r"fit: clip_grad_value must be positive"),
    "fit shuffle='no'": (lambda: fit(shuffle="no"), TypeError, r"fit: shuffle must be True or False, got 'no'"),
    "fit seed=1.5": (lambda: fit(seed=1.5), TypeError, r"fit: seed must be an integer in \[0, 2\*\*64\), got 1.5"),
    "fit seed=-1": (lambda: fit(seed=-1), ValueError, r"fit: seed must be an integer in \[0, 2\*\*64\), got -1"),
    "fit seed=2**64": (lambda: fit(seed=2**64), ValueError, r"fit: seed must be an integer in \[0, 2\*\*64\)"),
    "fit batch_size=2.5": (lambda: fit(batch_size=2.5), ValueError, r"fit: batch_size must be a positive integer, got 2.5"),
    "fit batch_size=True": (lambda: fit(batch_size=True), TypeError, r"fit: batch_size must be a positive integer, got True"),
    "fit epochs=1.0": (lambda: fit(epochs=1.0), ValueError, r"fit: epochs must be a non-negative integer, got 1.0"),
    "fit initial_epoch=-1": (lambda: fit(initial_epoch=-1), ValueError, r"fit: initial_epoch must be a non-negative"),
    "fit epochs overflow": (lambda: fit(initial_epoch=2**63, epochs=2**64), ValueError, r"overflow the 64-bit step counter"),
    "fit verbose=3": (lambda: fit(verbose=3), ValueError, r"fit: verbose must be one of 0, 1, 2, got 3"),
    "fit lr=nan": (lambda: fit(lr=float("nan")), ValueError, r"fit: lr must be non-negative and finite, got nan"),
    "fit validation_split=1": (lambda: fit(validation_split=1.0), ValueError, r"fit: validation_split must be in \[0, 1\)"),
    "fit callbacks=Callback": (lambda: fit(callbacks=C.TerminateOnNaN()), TypeError, r"fit: callbacks must be a list"),
    "evaluate batch_size=0": (lambda: fastnn.evaluate(model(), *data(), batch_size=0), ValueError,
                              r"evaluate: batch_size must be a positive integer, got 0"),
    "predict batch_size='8'": (lambda: fastnn.predict(model(), data()[0], batch_size="8"), TypeError,
                               r"predict: batch_size must be a positive integer, got '8'"),
    "train_step seed=-1": (lambda: fastnn.train_step(model(), *data(), "cross_entropy", an_optimizer(), seed=-1),
                           ValueError, r"train_step: seed must be an integer in \[0, 2\*\*64\), got -1"),
    "train_step step=2**64": (lambda: fastnn.train_step(model(), *data(), "cross_entropy", an_optimizer(), step=2**64),
                              ValueError, r"train_step: step must be an integer in \[0, 2\*\*64\)"),
    "PReLU(2.9)": (lambda: nn.PReLU(2.9), ValueError, r"PReLU: num_parameters must be a positive integer, got 2.9"),
    "PReLU(init=nan)": (lambda: nn.PReLU(init=float("nan")), ValueError, r"PReLU: init must be a finite number"),
    "BatchNorm1d(2.7)": (lambda: nn.BatchNorm1d(2.7), ValueError, r"BatchNorm1d: num_features must be a positive integer, got 2.7"),
    "BatchNorm1d(-3)": (lambda: nn.BatchNorm1d(-3), ValueError, r"BatchNorm1d: num_features must be a positive integer, got -3"),
    "BatchNorm2d(affine='yes')": (lambda: nn.BatchNorm2d(3, affine="yes"), TypeError, r"BatchNorm2d: affine must be True or False"),
    "BatchNorm1d(momentum=2)": (lambda: nn.BatchNorm1d(3, momentum=2), ValueError, r"BatchNorm1d: momentum must be in \[0, 1\]"),
    "Linear(3.0, 2)": (lambda: nn.Linear(3.0, 2), ValueError, r"Linear: in_features must be a positive integer, got 3.0"),
    "Linear(bias=0)": (lambda: nn.Linear(3, 2, bias=0), TypeError, r"Linear: bias must be True or False, got 0"),
    "Linear(negative_slope='x')": (lambda: nn.Linear(3, 2, negative_slope="x"), TypeError, r"Linear: negative_slope must be a real"),
    "LeakyReLU(inf)": (lambda: nn.LeakyReLU(math.inf), ValueError, r"LeakyReLU: negative_slope must be a finite number"),
    "ELU(True)": (lambda: nn.ELU(True), TypeError, r"ELU: alpha must be a real number, got True"),
    "Dropout(1)": (lambda: nn.Dropout(1), ValueError, r"Dropout: p must be in \[0, 1\), got 1"),
    "Dropout(True)": (lambda: nn.Dropout(True), TypeError, r"Dropout: p must be a real number, got True"),
    "Maxout(2.0)": (lambda: nn.Maxout(2.0), ValueError, r"Maxout: pieces must be a positive integer, got 2.0"),
    "Flatten(1.5)": (lambda: nn.Flatten(1.5), ValueError, r"Flatten: start_dim must be an integer, got 1.5"),
    "Softmax(dim=True)": (lambda: nn.Softmax(dim=True), TypeError, r"Softmax: dim must be an integer"),
    "Softmax(dim=None)": (lambda: nn.Softmax(dim=None), ValueError, r"Softmax: dim=None .* is not supported; pass dim=-1"),
    "RReLU(lower='a')": (lambda: nn.RReLU("a"), TypeError, r"RReLU: lower must be a real number"),
    "one_hot(num_classes=2.5)": (lambda: nn.loss.one_hot([0, 1], 2.5), ValueError, r"one_hot: num_classes must be a positive"),
    "Parameter(requires_grad='no')": (lambda: nn.Parameter(np.ones(3, np.float32), requires_grad="no"), TypeError,
                                      r"Parameter: requires_grad must be True or False, got 'no'"),
    "Module.train('no')": (lambda: model().train("no"), TypeError, r"Sequential.train: mode must be True or False"),
    "requires_grad_(0)": (lambda: model().requires_grad_(0), TypeError, r"requires_grad_: requires_grad must be True or False"),
    "SGD(lr=True)": (lambda: optim.SGD(model().parameters(), lr=True), ValueError, r"Invalid learning rate: True"),
    "SGD(lr='0.1')": (lambda: optim.SGD(model().parameters(), lr="0.1"), ValueError, r"Invalid learning rate: '0.1'"),
    "SGD(nesterov=1)": (lambda: optim.SGD(model().parameters(), momentum=0.9, nesterov=1), ValueError, r"Invalid nesterov: 1"),
    "Adam(amsgrad='no')": (lambda: optim.Adam(model().parameters(), amsgrad="no"), ValueError, r"Invalid amsgrad: 'no'"),
    "Adam(eps=nan)": (lambda: optim.Adam(model().parameters(), eps=float("nan")), ValueError, r"Invalid epsilon value: nan"),
    "RMSprop(centered=None)": (lambda: optim.RMSprop(model().parameters(), centered=None), ValueError, r"Invalid centered"),
    "StepLR(step_size=0)": (lambda: S.StepLR(an_optimizer(), step_size=0), ValueError, r"StepLR: step_size must be a positive integer, got 0"),
    "StepLR(step_size=1.5)": (lambda: S.StepLR(an_optimizer(), step_size=1.5), ValueError, r"StepLR: step_size must be a positive"),
    "ExponentialLR(gamma=-1)": (lambda: S.ExponentialLR(an_optimizer(), gamma=-1), ValueError, r"ExponentialLR: gamma must be positive"),
    "MultiStepLR(milestones=[1.5])": (lambda: S.MultiStepLR(an_optimizer(), [1.5]), ValueError, r"MultiStepLR: milestones\[\] must be"),
    "CosineAnnealingLR(T_max=0)": (lambda: S.CosineAnnealingLR(an_optimizer(), 0), ValueError, r"CosineAnnealingLR: T_max must be a positive"),
    "LinearLR(total_iters=0)": (lambda: S.LinearLR(an_optimizer(), total_iters=0), ValueError, r"LinearLR: total_iters must be a positive"),
    "LambdaLR(lr_lambda=2)": (lambda: S.LambdaLR(an_optimizer(), 2), TypeError, r"LambdaLR: lr_lambda must be a function"),
    "ReduceLROnPlateau(factor=-1)": (lambda: S.ReduceLROnPlateau(an_optimizer(), factor=-1), ValueError,
                                     r"ReduceLROnPlateau: factor must be in \[0, 1\)"),
    "ReduceLROnPlateau(patience=1.5)": (lambda: S.ReduceLROnPlateau(an_optimizer(), patience=1.5), ValueError,
                                        r"ReduceLROnPlateau: patience must be a non-negative integer"),
    "StepLR(last_epoch=-2)": (lambda: S.StepLR(an_optimizer(), 2, last_epoch=-2), ValueError, r"StepLR: last_epoch must be an integer >= -1"),
    "clip_grad_norm_(max_norm=True)": (lambda: optim.clip_grad_norm_(model().parameters(), True), TypeError,
                                       r"clip_grad_norm_: max_norm must be a real number, got True"),
    "clip_grad_norm_(norm_type='2')": (lambda: optim.clip_grad_norm_(model().parameters(), 1.0, "2"), TypeError,
                                       r"clip_grad_norm_: norm_type must be a real number"),
    "clip_grad_value_(nan)": (lambda: optim.clip_grad_value_(model().parameters(), float("nan")), ValueError,
                              r"clip_grad_value_: clip_value must be a number \(not NaN\)"),
    "max_norm_('1')": (lambda: optim.max_norm_(model().parameters(), "1"), TypeError, r"max_norm_: max_norm must be a real"),
    "EarlyStopping(patience=0.5)": (lambda: C.EarlyStopping(patience=0.5), ValueError, r"EarlyStopping: patience must be a non-negative"),
    "EarlyStopping(min_delta=nan)": (lambda: C.EarlyStopping(min_delta=float("nan")), ValueError, r"EarlyStopping: min_delta must be"),
    "EarlyStopping(mode='best')": (lambda: C.EarlyStopping(mode="best"), ValueError, r"EarlyStopping: mode must be one of"),
    "EarlyStopping(restore_best_weights=1)": (lambda: C.EarlyStopping(restore_best_weights=1), TypeError,
                                              r"EarlyStopping: restore_best_weights must be True or False"),
    "ModelCheckpoint(save_best_only='yes')": (lambda: C.ModelCheckpoint("x.fnn", save_best_only="yes"), TypeError,
                                              r"ModelCheckpoint: save_best_only must be True or False"),
    "LearningRateScheduler(0.1)": (lambda: C.LearningRateScheduler(0.1), TypeError, r"LearningRateScheduler: schedule must be"),
    "CSVLogger(separator=', ')": (lambda: C.CSVLogger("x.csv", separator=", "), ValueError, r"CSVLogger: separator must be one"),
    "LambdaCallback(on_epoch_end=1)": (lambda: C.LambdaCallback(on_epoch_end=1), TypeError, r"LambdaCallback: on_epoch_end must be"),
    "set_num_threads(2**70)": (lambda: fastnn.set_num_threads(2**70), ValueError, r"set_num_threads: n must be < 2\*\*31"),
    "fashion_mnist(flatten='no')": (lambda: fastnn.datasets.fashion_mnist("bundled", flatten="no"), TypeError,
                                    r"fashion_mnist: flatten must be True or False"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_hyperparameter_is_a_clear_error(case):
    call, exc, message = BAD[case]
    with pytest.raises(exc, match=message):
        call()


def test_numpy_scalars_are_accepted():
    assert nn.Dropout(np.float32(0.5)).p == 0.5
    assert nn.PReLU(np.int64(3)).weight.shape == (3,)
    assert nn.BatchNorm1d(np.int32(4), eps=np.float32(1e-3), affine=np.bool_(True)).num_features == 4
    assert nn.Linear(np.int64(3), np.uint8(2)).weight.shape == (2, 3)
    opt = optim.Adam(model().parameters(), lr=np.float32(0.01), amsgrad=np.bool_(False))
    S.StepLR(opt, step_size=np.int64(2), gamma=np.float64(0.5))
    history = fit(epochs=np.int64(2), batch_size=np.int32(4), seed=np.uint64(2**63 + 5), shuffle=np.bool_(False),
                  clip_grad_norm=np.float32(1.0), verbose=np.int8(0))
    assert len(history["loss"]) == 2


def test_set_num_threads_takes_numpy_integers():
    old = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(np.int64(1))
        assert fastnn.get_num_threads() == 1
    finally:
        fastnn.set_num_threads(old)


def test_batch_size_larger_than_the_data_is_one_batch():
    X, y = data(10)
    histories = []
    for batch_size in (10, 2**63, 2**70):
        m = model()
        histories.append(fastnn.fit(m, X, y, epochs=2, batch_size=batch_size, seed=3, verbose=0)["loss"])
        assert fastnn.predict(m, X, batch_size=batch_size).shape == (10, 2)
        assert fastnn.evaluate(m, X, y, batch_size=batch_size)["loss"] > 0
    assert histories[0] == histories[1] == histories[2]


def test_shuffle_false_keeps_the_order():
    """shuffle used to be truthy: 'no' shuffled. Now the flag must be a bool, and False is honoured."""
    X, y = data(12)
    a = fastnn.fit(model(), X, y, epochs=2, batch_size=3, shuffle=False, seed=1, verbose=0)["loss"]
    b = fastnn.fit(model(), X, y, epochs=2, batch_size=3, shuffle=False, seed=2, verbose=0)["loss"]
    c = fastnn.fit(model(), X, y, epochs=2, batch_size=3, shuffle=True, seed=1, verbose=0)["loss"]
    assert a == b != c


def test_clip_grad_norm_is_applied():
    """A positive threshold clips (it used to be off for -1 and NaN); None is no clipping."""
    X, y = data()
    tiny = fastnn.fit(model(), X, y, optimizer="sgd", lr=1.0, epochs=3, seed=0, verbose=0, clip_grad_norm=1e-6)
    none = fastnn.fit(model(), X, y, optimizer="sgd", lr=1.0, epochs=3, seed=0, verbose=0, clip_grad_norm=None)
    assert abs(tiny["loss"][2] - tiny["loss"][0]) < 1e-4 < abs(none["loss"][2] - none["loss"][0])


def test_validate_helpers():
    assert v.check_int(np.int16(5), "f", "n", 1) == 5 and type(v.check_int(np.int16(5), "f", "n")) is int
    assert v.check_real(np.float32(0.25), "f", "x", 0, 1) == 0.25
    assert v.check_real(math.inf, "f", "x", 0, finite=False) == math.inf
    assert v.check_seed(2**64 - 1, "f") == 2**64 - 1
    assert v.check_choice(np.int64(2), "f", "verbose", (0, 1, 2)) == 2
    with pytest.raises(ValueError, match=r"f: verbose must be one of 0, 1, 2, got True"):
        v.check_choice(True, "f", "verbose", (0, 1, 2))
    with pytest.raises(ValueError, match="f: x must be a finite number, got inf"):
        v.check_real(math.inf, "f", "x")
    with pytest.raises(ValueError, match=r"f: n must be an integer in \[0, 3\], got 4"):
        v.check_int(4, "f", "n", 0, 3)
    with pytest.raises(TypeError, match=r"f: b must be True or False, got np.int64\(1\)"):
        v.check_bool(np.int64(1), "f", "b")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fastnn", *args], capture_output=True, text=True, timeout=120,
                          env=child_env())


@pytest.mark.parametrize("args,message", [
    (("train", "--batch-size", "2.5"), "argument --batch-size: must be an integer >= 1, got '2.5'"),
    (("train", "--seed", "-1"), "argument --seed: must be an integer >= 0 and <= 18446744073709551615, got '-1'"),
    (("train", "--lr", "nan"), "argument --lr: must be a number > 0, got 'nan'"),
    (("train", "--epochs", "-2"), "argument --epochs: must be an integer >= 0, got '-2'"),
    (("info", "--threads", "0"), "argument --threads: must be an integer >= 1 and <= 1024, got '0'"),
])
def test_cli_options_are_usage_errors(args, message):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
