"""The single-pass SIMD update loops (cpp/include/fastnn/optim/simd.h): every element goes through
the same packet arithmetic wherever it sits (odd lengths, partial last packets, many segments,
unaligned buffers, any thread count); float32 divides by sqrt(v) + eps with hardware estimates
refined by Newton-Raphson, so it is compared with the reference and torch within float32
tolerance; special values (v = 0, overflowing and denormal gradients) behave as in torch."""

import numpy as np
import pytest

from fastnn import optim
from fastnn._config import _C
from fastnn.nn.parameter import pack
from fastnn.reference import optim as R
from tests.conftest import DTYPES, assert_close, num_threads, requires_torch

TRAIN_DECAY = 3  # segment flags TRAINABLE | DECAY

# (state arrays, hyperparameters of the binding) of the plain rules: no penalty that needs
# the scratch gradient, so the whole step is the one SIMD loop (AdamW's decay is folded into it).
RULES = {
    "adam": (("exp_avg", "exp_avg_sq"), dict(lr=0.1)),
    "adamw": (("exp_avg", "exp_avg_sq"), dict(lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)),
    "amsgrad": (("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), dict(lr=0.1, amsgrad=True)),
    "adam_lerp_from_end": (("exp_avg", "exp_avg_sq"), dict(lr=0.1, beta1=0.3)),
    "rmsprop": (("square_avg",), dict(lr=0.01)),
    "rmsprop_centered_momentum": (("square_avg", "grad_avg", "momentum_buffer"), dict(lr=0.01, centered=True, momentum=0.9)),
    "adagrad": (("sum",), dict(lr=0.1)),
    "sgd_momentum": (("momentum_buffer",), dict(lr=0.1, momentum=0.9)),
    "sgd_nesterov": (("momentum_buffer",), dict(lr=0.1, momentum=0.9, nesterov=True)),
}


def c_step(rule, p, g, segs, states, step):
    """One step of `rule` through the binding on flat arrays (states: dict of flat arrays)."""
    names, opts = RULES[rule]
    if rule.startswith("adam") or rule == "amsgrad":
        _C.adam_step(p, g, segs, states["exp_avg"], states["exp_avg_sq"], states.get("max_exp_avg_sq"), step=step,
                     **{"beta1": 0.9, **opts})
    elif rule.startswith("rmsprop"):
        _C.rmsprop_step(p, g, segs, states["square_avg"], states.get("grad_avg"), states.get("momentum_buffer"), **opts)
    elif rule == "adagrad":
        _C.adagrad_step(p, g, segs, states["sum"], step=step, **opts)
    else:
        _C.sgd_step(p, g, segs, states["momentum_buffer"], first_step=step == 1, **opts)


def reference_step(rule, p, g, state, step):
    """The same step with the NumPy reference on one parameter (state: the reference's dict)."""
    _, opts = RULES[rule]
    opts = dict(opts)
    if rule.startswith("adam") or rule == "amsgrad":
        opts["betas"] = (opts.pop("beta1", 0.9), 0.999)
        R.adam([p], [g], [state], [True], **opts)
    elif rule.startswith("rmsprop"):
        R.rmsprop([p], [g], [state], [True], **opts)
    elif rule == "adagrad":
        R.adagrad([p], [g], [state], [True], **opts)
    else:
        R.sgd([p], [g], [state], [True], **opts)


def run_flat(rule, n, dtype, steps=3, segs=None, offset=0, seed=0):
    """Final (params, states) after `steps` steps on a flat buffer of n elements that starts
    `offset` elements into its allocation; segs defaults to one segment over everything."""
    rng = np.random.default_rng(seed)
    names, _ = RULES[rule]

    def placed(values):
        raw = np.zeros(n + offset, dtype)
        view = raw[offset:]
        view[:] = values
        return view

    p = placed(rng.normal(size=n))
    states = {name: placed(np.zeros(n)) for name in names}
    g = placed(np.zeros(n))
    segs = np.array([[0, n, TRAIN_DECAY]], np.int64) if segs is None else segs
    for step in range(1, steps + 1):
        g[:] = rng.normal(size=n)
        c_step(rule, p, g, segs, states, step)
    return p, states


def cut(n, sizes):
    """A segment table covering [0, n) with segments of the given sizes, repeated."""
    rows, start, i = [], 0, 0
    while start < n:
        size = min(sizes[i % len(sizes)], n - start)
        rows.append([start, size, TRAIN_DECAY])
        start, i = start + size, i + 1
    return np.array(rows, np.int64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 31, 1023, 1024, 1025, 4097])
@pytest.mark.parametrize("rule", ["adam", "adamw", "amsgrad", "rmsprop_centered_momentum", "adagrad", "sgd_nesterov"])
def test_odd_lengths_match_reference(rule, n, dtype):
    p, _ = run_flat(rule, n, dtype)
    rng = np.random.default_rng(0)
    expected, state = rng.normal(size=n).astype(dtype), {}
    for step in range(1, 4):
        reference_step(rule, expected, rng.normal(size=n).astype(dtype), state, step)
    assert_close(p, expected, scale=10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", list(RULES))
def test_same_bits_for_any_segmentation(rule, dtype):
    """An element's result does not depend on whether it is in a full packet, a padded last
    packet, a block boundary or which segment: one segment vs many odd-sized ones."""
    n = 9000
    whole, whole_states = run_flat(rule, n, dtype)
    for sizes in ([1, 15, 16, 17], [1023, 1025, 7], [4097, 3, 5000]):
        pieces, piece_states = run_flat(rule, n, dtype, segs=cut(n, sizes))
        np.testing.assert_array_equal(pieces, whole, err_msg=f"segments {sizes}")
        for name in whole_states:
            np.testing.assert_array_equal(piece_states[name], whole_states[name], err_msg=f"{name}, segments {sizes}")


@pytest.mark.parametrize("rule", list(RULES))
def test_same_bits_for_any_buffer_alignment(rule):
    """Buffers starting 0..16 floats into their allocation (unaligned for every SIMD width)."""
    n = 1000 + 13
    first, _ = run_flat(rule, n, np.float32)
    for offset in range(1, 17):
        shifted, _ = run_flat(rule, n, np.float32, offset=offset)
        np.testing.assert_array_equal(shifted, first, err_msg=f"offset {offset}")


@pytest.mark.parametrize("rule", list(RULES))
def test_same_bits_with_one_and_two_threads(rule):
    n = 200_003  # far above the two-thread threshold, not a multiple of any packet or item
    segs = cut(n, [150_000, 17, 49_986])
    runs = []
    for threads in (1, 2):
        with num_threads(threads):
            runs.append(run_flat(rule, n, np.float32, segs=segs)[0])
    np.testing.assert_array_equal(runs[1], runs[0])


@pytest.mark.parametrize("rule", ["adam", "amsgrad", "rmsprop", "rmsprop_centered_momentum", "adagrad"])
def test_zero_gradient_elements_stay_put(rule):
    """Elements whose gradient is exactly 0 for many steps have v == 0: no NaN, no movement."""
    n = 1000
    rng = np.random.default_rng(1)
    p0 = rng.normal(size=n).astype(np.float32)
    p, g = p0.copy(), np.zeros(n, np.float32)
    states = {name: np.zeros(n, np.float32) for name in RULES[rule][0]}
    dead = rng.random(n) < 0.3
    segs = np.array([[0, n, TRAIN_DECAY]], np.int64)
    for step in range(1, 51):
        g[:] = rng.normal(size=n)
        g[dead] = 0
        c_step(rule, p, g, segs, states, step)
    assert np.isfinite(p).all()
    np.testing.assert_array_equal(p[dead], p0[dead])
    assert (p[~dead] != p0[~dead]).all()


def torch_trajectory(name, opts, grads_fn, dtype, steps, shapes=((37, 29), (29,), (1025,))):
    """(fastnn params, torch params) after `steps` steps of fastnn.optim.<name> and torch.optim.<name>
    (both on the same random start and the gradients grads_fn(rng, size))."""
    import torch

    buf, params = pack(list(shapes), dtype)
    rng = np.random.default_rng(0)
    buf.params[:] = rng.normal(size=buf.params.size)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tensors = [torch.tensor(p.numpy(), dtype=tdtype, requires_grad=True) for p in params]
    opt, topt = getattr(optim, name)(params, **opts), getattr(torch.optim, name)(tensors, **opts)
    for _ in range(steps):
        buf.grads[:] = grads_fn(rng, buf.grads.size)
        for t, p in zip(tensors, params):
            t.grad = torch.tensor(p.grad.copy(), dtype=tdtype)
        opt.step()
        topt.step()
    return buf.params.copy(), np.concatenate([t.detach().numpy().ravel() for t in tensors])


TORCH_100 = [
    ("Adam", dict(lr=1e-3)),
    ("Adam", dict(lr=0.1)),
    ("Adam", dict(lr=0.1, amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.1, betas=(0.3, 0.9))),
    ("AdamW", dict(lr=1e-3)),
    ("AdamW", dict(lr=0.1, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("Adagrad", dict(lr=0.1)),
]


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,opts", TORCH_100, ids=[f"{n}{o}" for n, o in TORCH_100])
def test_matches_torch_over_100_steps(name, opts, dtype):
    """The trajectories stay together for 100 steps. Measured: float32 within 9.5e-7 (lr=0.1:
    steps of 0.1 on parameters of ~1; the approximate division is 3e-7 of a step, below the
    float32 rounding of the trajectory itself: with exact sqrt and division the largest deviation
    was the same 9.5e-7), float64 within 3e-15. Tolerances 5e-6 and 2e-13 leave room without
    hiding a wrong rule (one wrong step moves parameters by ~lr)."""
    ours, theirs = torch_trajectory(name, opts, lambda rng, n: rng.normal(size=n), dtype, 100)
    atol = 5e-6 if dtype == np.float32 else 2e-13
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)


@requires_torch
@pytest.mark.parametrize("name,opts", [("Adam", dict(lr=0.1)), ("Adam", dict(lr=0.1, amsgrad=True)),
                                       ("AdamW", dict(lr=0.1, eps=1e-30)), ("Adam", dict(lr=0.1, eps=1e-30)),
                                       ("RMSprop", dict(lr=0.01)), ("Adagrad", dict(lr=0.1))],
                         ids=lambda x: str(x))
@pytest.mark.parametrize("scale", [1e-40, 1e-20, 1e19, 1e20, 1e30])
def test_extreme_gradient_magnitudes_match_torch(name, opts, scale):
    """Denormal gradients (1e-40: m denormal, v underflows to 0), tiny ones (1e-20: v ~1e-43 is
    denormal; with eps=1e-30 the step still depends on it), huge ones (1e19; 1e20: v overflows to
    inf after ~35 steps, 1e30: at once, and torch's step is then m/inf = 0), over 100 steps."""
    ours, theirs = torch_trajectory(name, opts, lambda rng, n: rng.normal(size=n) * scale, np.float32, 100)
    assert np.isfinite(theirs).all() and np.isfinite(ours).all()
    # rtol: with eps=1e-30, gradients whose square underflows (v = 0) make steps of m/eps ~1e9
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=5e-6)


@requires_torch
def test_infinite_square_average_freezes_parameters_as_torch():
    """g = 1e30: (1 - beta2) g^2 overflows, v = inf, and torch's step is m / inf = 0."""
    ours, theirs = torch_trajectory("Adam", dict(lr=0.1), lambda rng, n: np.full(n, 1e30), np.float32, 3)
    start = np.random.default_rng(0).normal(size=ours.size).astype(np.float32)
    np.testing.assert_array_equal(theirs, start)
    np.testing.assert_array_equal(ours, start)


def test_float64_is_the_exact_rule():
    """float64 keeps IEEE sqrt and division: within a few ulp of the NumPy reference after 100
    steps (the differences are the FMAs in the moment updates, one rounding each)."""
    n = 1000
    p, _ = run_flat("adam", n, np.float64, steps=100)
    rng = np.random.default_rng(0)
    expected, state = rng.normal(size=n), {}
    for step in range(1, 101):
        reference_step("adam", expected, rng.normal(size=n), state, step)
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-13)
