"""nn.init: sample statistics vs the formulas (seed 002 table 11-1), torch as an oracle for gains,
fans and distributions, seeding, in-place dtype-preserving fills, and errors."""

import functools
import math

import numpy as np
import pytest

from fastnn.nn import init
from fastnn.nn.parameter import FlatBuffer, Parameter
from tests.conftest import requires_torch

# (shape, fan_in, fan_out) written out by hand: weights are (out, in, *kernel) as in PyTorch.
SHAPES = {
    "linear": ((400, 500), 500, 400),
    "conv": ((100, 40, 5, 5), 40 * 25, 100 * 25),
}
STAT_DTYPES = [np.float32]  # float64 draws are the same numbers before rounding: test_float32_is_float64_rounded


def fan(mode, fi, fo):
    return {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2}[mode]


def leaky_gain(slope):
    return math.sqrt(2 / (1 + slope**2))


def phi(x):
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def Phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def truncated_moments(mean, std, a, b):
    """Mean and std of N(mean, std²) restricted to [a, b] (closed form)."""
    al, be = (a - mean) / std, (b - mean) / std
    z = Phi(be) - Phi(al)
    m = (phi(al) - phi(be)) / z
    var = 1 + (al * phi(al) - be * phi(be)) / z - m * m
    return mean + std * m, std * math.sqrt(var)


def check_uniform(x, lo, hi, dtype):
    """Inside [lo, hi] (bounds rounded to dtype), spans it, mean and std of U(lo, hi) within 2%."""
    assert x.dtype == dtype
    lo_t, hi_t = np.asarray(lo, dtype), np.asarray(hi, dtype)
    assert x.min() >= lo_t and x.max() <= hi_t, (x.min(), x.max(), lo, hi)
    width = hi - lo
    assert x.min() < lo + 0.005 * width and x.max() > hi - 0.005 * width, "does not span the interval"
    std = width / math.sqrt(12)
    x64 = x.astype(np.float64)
    assert abs(x64.std() / std - 1) < 0.02, (x64.std(), std)
    assert abs(x64.mean() - (lo + hi) / 2) < 0.02 * std


def check_normal(x, mean, std, dtype):
    """Mean, std within 2%, and the shape of a normal: 68.3% within one σ, tails beyond 3.5σ."""
    assert x.dtype == dtype
    x64 = x.astype(np.float64)
    assert abs(x64.std() / std - 1) < 0.02, (x64.std(), std)
    assert abs(x64.mean() - mean) < 0.02 * std
    within = np.mean(np.abs(x64 - mean) < std)
    assert abs(within - 0.6827) < 0.01, within  # U(±√3σ) would give 0.577
    assert np.abs(x64 - mean).max() > 3.5 * std


def check_truncated(x, mean, std, a, b, dtype):
    """Inside [a, b], reaches both cut-offs, mean and std of the truncated normal within 2%."""
    assert x.dtype == dtype
    assert x.min() >= np.asarray(a, dtype) and x.max() <= np.asarray(b, dtype)
    assert x.min() < a + 0.01 * (b - a) and x.max() > b - 0.01 * (b - a)
    t_mean, t_std = truncated_moments(mean, std, a, b)
    x64 = x.astype(np.float64)
    assert abs(x64.std() / t_std - 1) < 0.02, (x64.std(), t_std)
    assert abs(x64.mean() - t_mean) < 0.02 * t_std


# id -> (fill(array, generator), kind, expected(fan_in, fan_out)). kind "uniform": symmetric bound r;
# "normal": σ (mean 0); "trunc": (std before truncation, cut-off) of a zero-mean truncated normal.
S5 = math.sqrt(5)
CASES = {
    "xavier_uniform": (init.xavier_uniform_, "uniform", lambda fi, fo: math.sqrt(6 / (fi + fo))),
    "xavier_uniform_gain": (
        functools.partial(init.xavier_uniform_, gain=2.5),
        "uniform",
        lambda fi, fo: 2.5 * math.sqrt(6 / (fi + fo)),
    ),
    "xavier_normal": (init.xavier_normal_, "normal", lambda fi, fo: math.sqrt(2 / (fi + fo))),
    "xavier_normal_gain": (
        functools.partial(init.xavier_normal_, gain=0.5),
        "normal",
        lambda fi, fo: 0.5 * math.sqrt(2 / (fi + fo)),
    ),
    "lecun_uniform": (init.lecun_uniform_, "uniform", lambda fi, fo: math.sqrt(3 / fi)),
    "lecun_normal": (init.lecun_normal_, "normal", lambda fi, fo: math.sqrt(1 / fi)),
    "pytorch_linear_default_weight": (
        lambda w, generator=None: init.pytorch_linear_default_(w, None, generator)[0],
        "uniform",
        lambda fi, fo: 1 / math.sqrt(fi),
    ),
    "kaiming_uniform_sqrt5": (
        functools.partial(init.kaiming_uniform_, a=S5),
        "uniform",
        lambda fi, fo: 1 / math.sqrt(fi),
    ),
}
for mode in init.MODES:
    for nl, a, gain in [
        ("relu", 0, math.sqrt(2)),
        ("leaky_relu", 0, math.sqrt(2)),  # torch's default a=0: plain He
        ("leaky_relu", 0.2, leaky_gain(0.2)),
        ("tanh", 0, 5 / 3),
        ("selu", 0, 3 / 4),
        ("linear", 0, 1.0),
    ]:
        kw = dict(a=a, mode=mode, nonlinearity=nl)
        CASES[f"kaiming_uniform-{nl}{a}-{mode}"] = (
            functools.partial(init.kaiming_uniform_, **kw),
            "uniform",
            lambda fi, fo, g=gain, m=mode: g * math.sqrt(3 / fan(m, fi, fo)),
        )
        CASES[f"kaiming_normal-{nl}{a}-{mode}"] = (
            functools.partial(init.kaiming_normal_, **kw),
            "normal",
            lambda fi, fo, g=gain, m=mode: g / math.sqrt(fan(m, fi, fo)),
        )
    for scale in (1.0, 2.0):
        vs = functools.partial(init.variance_scaling_, scale=scale, mode=mode)
        CASES[f"variance_scaling-{scale}-{mode}-uniform"] = (
            functools.partial(vs, distribution="uniform"),
            "uniform",
            lambda fi, fo, s=scale, m=mode: math.sqrt(3 * s / fan(m, fi, fo)),
        )
        CASES[f"variance_scaling-{scale}-{mode}-normal"] = (
            functools.partial(vs, distribution="normal"),
            "normal",
            lambda fi, fo, s=scale, m=mode: math.sqrt(s / fan(m, fi, fo)),
        )
        # Keras: σ' = √(scale/n) / 0.8796 cut at ±2σ', so the truncated std is √(scale/n)
        CASES[f"variance_scaling-{scale}-{mode}-truncated"] = (
            functools.partial(vs, distribution="truncated_normal"),
            "trunc",
            lambda fi, fo, s=scale, m=mode: math.sqrt(s / fan(m, fi, fo)) / 0.87962566103423978,
        )

# Seed 002, table 11-1, with n_in = fan_in, n_out = fan_out.
TABLE = {
    "logistic-uniform": (init.default_init("logistic"), "uniform", lambda i, o: math.sqrt(6 / (i + o))),
    "logistic-normal": (init.default_init("logistic", "normal"), "normal", lambda i, o: math.sqrt(2 / (i + o))),
    "sigmoid-uniform": (init.default_init("sigmoid"), "uniform", lambda i, o: math.sqrt(6 / (i + o))),
    "tanh-uniform": (init.default_init("tanh"), "uniform", lambda i, o: 4 * math.sqrt(6 / (i + o))),
    "tanh-normal": (init.default_init("tanh", "normal"), "normal", lambda i, o: 4 * math.sqrt(2 / (i + o))),
    # the table's ReLU row as printed: √2·√(6/(n_in+n_out)), √2·√(2/(n_in+n_out)) (He with fan_avg)
    "relu-table-uniform": (
        init.default_init("relu", mode="fan_avg"),
        "uniform",
        lambda i, o: math.sqrt(2) * math.sqrt(6 / (i + o)),
    ),
    "relu-table-normal": (
        init.default_init("relu", "normal", mode="fan_avg"),
        "normal",
        lambda i, o: math.sqrt(2) * math.sqrt(2 / (i + o)),
    ),
    # He with fan_in: √(6/fan_in), √(2/fan_in)
    "leaky_relu-slope": (
        init.default_init("leaky_relu", param=0.2),
        "uniform",
        lambda i, o: leaky_gain(0.2) * math.sqrt(3 / i),
    ),
    "selu": (init.default_init("selu"), "normal", lambda i, o: math.sqrt(1 / i)),
    "selu-uniform": (init.default_init("selu", "uniform"), "uniform", lambda i, o: math.sqrt(3 / i)),
    "relu-truncated": (
        init.init_for("relu", "truncated_normal"),
        "trunc",
        lambda i, o: math.sqrt(2 / i) / 0.87962566103423978,
    ),
}
for act in ["relu", "leaky_relu", "prelu", "rrelu", "elu", "ReLU", "LeakyReLU"]:
    TABLE[f"{act}-uniform"] = (init.default_init(act), "uniform", lambda i, o: math.sqrt(6 / i))
    TABLE[f"{act}-normal"] = (init.default_init(act, "normal"), "normal", lambda i, o: math.sqrt(2 / i))
for act in [None, "linear", "identity", "softmax"]:
    TABLE[f"{act}-uniform"] = (init.default_init(act), "uniform", lambda i, o: math.sqrt(6 / (i + o)))

# get(name) -> the same rule as the formula it names
BY_NAME = {
    "xavier_uniform": ("uniform", lambda i, o: math.sqrt(6 / (i + o))),
    "glorot_uniform": ("uniform", lambda i, o: math.sqrt(6 / (i + o))),
    "Glorot_Normal_": ("normal", lambda i, o: math.sqrt(2 / (i + o))),
    "he_uniform": ("uniform", lambda i, o: math.sqrt(6 / i)),
    "he_normal": ("normal", lambda i, o: math.sqrt(2 / i)),
    "kaiming_normal_": ("normal", lambda i, o: math.sqrt(2 / i)),
    "lecun_uniform": ("uniform", lambda i, o: math.sqrt(3 / i)),
    "lecun_normal": ("normal", lambda i, o: math.sqrt(1 / i)),
}
for name, (kind, expected) in BY_NAME.items():
    TABLE[f"get-{name}"] = (init.get(name), kind, expected)


def check(kind, x, value, dtype):
    if kind == "uniform":
        check_uniform(x, -value, value, dtype)
    elif kind == "normal":
        check_normal(x, 0.0, value, dtype)
    else:
        check_truncated(x, 0.0, value, -2 * value, 2 * value, dtype)


@pytest.mark.parametrize("dtype", STAT_DTYPES)
@pytest.mark.parametrize("shape_id", SHAPES)
@pytest.mark.parametrize("case", {**CASES, **TABLE})
def test_statistics_match_formula(case, shape_id, dtype):
    fill, kind, expected = {**CASES, **TABLE}[case]
    shape, fi, fo = SHAPES[shape_id]
    w = np.full(shape, np.nan, dtype=dtype)
    out = fill(w, generator=7)
    assert out is w
    check(kind, w, expected(fi, fo), dtype)


@pytest.mark.parametrize("dtype", STAT_DTYPES)
def test_plain_fills_statistics(dtype):
    w = np.empty((400, 500), dtype)
    check_uniform(init.uniform_(w, -0.3, 0.7, generator=1), -0.3, 0.7, dtype)
    check_uniform(init.uniform_(w, generator=2), 0.0, 1.0, dtype)
    check_normal(init.normal_(w, 1.5, 0.25, generator=3), 1.5, 0.25, dtype)
    check_normal(init.normal_(w, generator=4), 0.0, 1.0, dtype)
    check_truncated(init.trunc_normal_(w, generator=5), 0.0, 1.0, -2.0, 2.0, dtype)
    check_truncated(init.trunc_normal_(w, 0.5, 0.2, 0.4, 1.1, generator=6), 0.5, 0.2, 0.4, 1.1, dtype)


def test_pytorch_linear_default_bias():
    w, b = np.empty((400, 500)), np.empty(4000)
    rw, rb = init.pytorch_linear_default_(w, b, generator=3)
    assert rw is w and rb is b
    check_uniform(b, -1 / math.sqrt(500), 1 / math.sqrt(500), np.float64)
    check_uniform(w, -1 / math.sqrt(500), 1 / math.sqrt(500), np.float64)
    assert init.pytorch_linear_default_(w, None, generator=3)[1] is None


def test_truncation_constant_is_the_std_of_a_two_sigma_truncated_normal():
    assert init._TRUNC2_STD == pytest.approx(truncated_moments(0, 1, -2, 2)[1], rel=1e-14)


def test_constant_zeros_ones_eye():
    w = np.full((3, 5), np.nan, np.float32)
    assert init.constant_(w, 0.25) is w and np.all(w == 0.25)
    assert init.zeros_(w) is w and np.all(w == 0)
    assert init.ones_(w) is w and np.all(w == 1)
    assert init.eye_(w) is w
    np.testing.assert_array_equal(w, np.eye(3, 5))
    tall = np.full((5, 3), 7.0)
    np.testing.assert_array_equal(init.eye_(tall), np.eye(5, 3))
    assert w.dtype == np.float32


# ------------------------------------------------------------------------------------------------
# torch as an oracle


@requires_torch
@pytest.mark.parametrize(
    "nonlinearity,param",
    [(n, None) for n in init.NONLINEARITIES] + [("leaky_relu", p) for p in (0, 0.2, 1, 3, 0.01)],
)
def test_gain_matches_torch(nonlinearity, param):
    import torch

    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15
    )


@requires_torch
@pytest.mark.parametrize("nonlinearity,param", [("swish", None), ("leaky_relu", "0.2"), ("leaky_relu", True)])
def test_gain_rejects_what_torch_rejects(nonlinearity, param):
    import torch

    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain(nonlinearity, param)
    with pytest.raises(ValueError, match="nonlinearity|negative_slope"):
        init.calculate_gain(nonlinearity, param)


@requires_torch
@pytest.mark.parametrize(
    "shape", [(400, 500), (3, 7), (1, 1), (16, 8, 3, 3), (64, 3, 7, 7), (1, 1, 1, 1), (5, 2, 3), (6, 4, 2, 3, 5)]
)
def test_fans_match_torch(shape):
    import torch

    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init._calculate_fan_in_and_fan_out(np.empty(shape)) == expected
    assert init._calculate_fan_in_and_fan_out(shape) == expected


@requires_torch
@pytest.mark.parametrize("shape", [(), (5,)])
def test_fans_need_two_dimensions_like_torch(shape):
    import torch

    with pytest.raises(ValueError):
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init._calculate_fan_in_and_fan_out(np.empty(shape))


TORCH_TWINS = {  # name -> (ours, torch's, kwargs); same distribution, different random numbers
    "uniform": ("uniform_", dict(a=-0.3, b=0.7)),
    "normal": ("normal_", dict(mean=0.5, std=0.1)),
    "trunc_normal": ("trunc_normal_", dict(mean=0.1, std=0.5, a=-0.5, b=1.0)),
    "xavier_uniform": ("xavier_uniform_", dict(gain=1.5)),
    "xavier_normal": ("xavier_normal_", dict(gain=0.7)),
    "kaiming_uniform_leaky_fan_out": ("kaiming_uniform_", dict(a=0.2, mode="fan_out")),
    "kaiming_uniform_sqrt5": ("kaiming_uniform_", dict(a=S5)),
    "kaiming_normal_relu": ("kaiming_normal_", dict(nonlinearity="relu")),
    "kaiming_normal_tanh_fan_out": ("kaiming_normal_", dict(mode="fan_out", nonlinearity="tanh")),
}


@requires_torch
@pytest.mark.parametrize("shape", [(400, 500), (100, 40, 5, 5)])
@pytest.mark.parametrize("twin", TORCH_TWINS)
def test_distribution_matches_torch(twin, shape):
    import torch

    name, kw = TORCH_TWINS[twin]
    ours = getattr(init, name)(np.empty(shape, np.float32), generator=0, **kw).astype(np.float64)
    g = torch.Generator().manual_seed(0)
    theirs = getattr(torch.nn.init, name)(torch.empty(shape), generator=g, **kw).double().numpy()
    assert abs(ours.std() / theirs.std() - 1) < 0.03
    assert abs(ours.mean() - theirs.mean()) < 0.03 * theirs.std()
    for q in (0.0, 0.05, 0.5, 0.95, 1.0):  # same shape: quantiles agree (extremes too, for bounded ones)
        if q in (0.0, 1.0) and "normal" in name and name != "trunc_normal_":
            continue
        assert abs(np.quantile(ours, q) - np.quantile(theirs, q)) < 0.03 * theirs.std(), q


@requires_torch
def test_pytorch_linear_default_matches_torch_linear():
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(500, 400)
    tw, tb = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    w, b = init.pytorch_linear_default_(np.empty((400, 500), np.float32), np.empty(400, np.float32), 0)
    bound = 1 / math.sqrt(500)
    assert abs(w.std() / tw.std() - 1) < 0.02
    assert np.abs(w).max() == pytest.approx(np.abs(tw).max(), rel=1e-3)
    assert np.abs(b).max() <= np.float32(bound) and np.abs(tb).max() <= bound
    assert np.abs(b).max() > 0.95 * bound


@requires_torch
def test_eye_matches_torch():
    import torch

    for shape in [(3, 5), (5, 3), (4, 4)]:
        np.testing.assert_array_equal(init.eye_(np.empty(shape)), torch.nn.init.eye_(torch.empty(shape)).numpy())


# ------------------------------------------------------------------------------------------------
# seeding, dtype, in place

SEEDED = {
    name: fn
    for name, fn in {
        "uniform": init.uniform_,
        "normal": init.normal_,
        "trunc_normal": init.trunc_normal_,
        "xavier_uniform": init.xavier_uniform_,
        "xavier_normal": init.xavier_normal_,
        "kaiming_uniform": init.kaiming_uniform_,
        "kaiming_normal": init.kaiming_normal_,
        "lecun_uniform": init.lecun_uniform_,
        "lecun_normal": init.lecun_normal_,
        "variance_scaling": init.variance_scaling_,
        "default_init_tanh": init.default_init("tanh"),
        "default_init_selu": init.default_init("selu"),
        "pytorch_linear_default": lambda w, generator=None: init.pytorch_linear_default_(w, None, generator)[0],
    }.items()
}


@pytest.mark.parametrize("name", SEEDED)
def test_same_seed_same_array(name):
    fill = SEEDED[name]
    shape = (30, 20, 3)
    a, b, c = (np.empty(shape) for _ in range(3))
    fill(a, generator=42)
    fill(b, generator=42)
    np.testing.assert_array_equal(a, b)
    fill(c, generator=43)
    assert not np.array_equal(a, c)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    fill(a, generator=g1)
    fill(b, generator=g2)
    np.testing.assert_array_equal(a, b)
    fill(a, generator=g1)  # the generator advances
    assert not np.array_equal(a, b)
    fill(a)
    fill(b)  # fresh entropy each call
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", SEEDED)
def test_float32_is_float64_rounded(name):
    fill = SEEDED[name]
    w64, w32 = np.empty((30, 20)), np.empty((30, 20), np.float32)
    fill(w64, generator=9)
    fill(w32, generator=9)
    assert w32.dtype == np.float32
    np.testing.assert_array_equal(w32, w64.astype(np.float32))


ALL_NAMES = sorted(init._BY_NAME)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_dtype_and_identity_kept(name, dtype):
    w = np.full((6, 4, 3), np.nan, dtype=dtype) if name not in ("eye", "identity") else np.full((6, 4), np.nan, dtype)
    out = init.get(name)(w, generator=1)
    assert out is w and w.dtype == dtype and np.all(np.isfinite(w))


def test_fills_views_in_place():
    base = np.zeros((40, 50))
    view = base[::2, 1::2]  # strided, not contiguous
    init.xavier_uniform_(view, generator=0)
    assert np.all(base[::2, 1::2] == view) and np.all(view != 0)
    assert np.all(base[1::2] == 0) and np.all(base[:, ::2] == 0)
    f = np.asfortranarray(np.zeros((40, 50)))
    c = np.zeros((40, 50))
    init.kaiming_normal_(f, generator=3)
    init.kaiming_normal_(c, generator=3)
    np.testing.assert_array_equal(f, c)  # same values by index whatever the memory order


def test_fills_a_parameter_in_its_flat_buffer():
    buf = FlatBuffer(400 * 500 + 400, np.float32)
    weight = Parameter(buf, 0, (400, 500), name="weight")
    bias = Parameter(buf, 400 * 500, (400,), weight_decay=False, name="bias")
    assert init.kaiming_uniform_(weight, nonlinearity="relu", generator=0) is weight
    check_uniform(buf.params[: 400 * 500], -math.sqrt(6 / 500), math.sqrt(6 / 500), np.float32)
    assert np.all(buf.params[400 * 500 :] == 0)
    init.pytorch_linear_default_(weight, bias, generator=1)
    assert np.abs(bias.data).max() > 0 and np.abs(bias.data).max() <= np.float32(1 / math.sqrt(500))


def test_zero_size_is_a_no_op():
    for shape in [(0, 5), (5, 0), (4, 0, 3, 3)]:
        w = np.empty(shape, np.float32)
        assert init.kaiming_uniform_(w) is w
        assert init.xavier_normal_(w) is w
        assert init.variance_scaling_(w) is w


def test_default_init_returns_a_reusable_callable():
    assert init.init_for is init.default_init
    f = init.default_init("elu")
    assert "he" in repr(f) and "fan_in" in repr(f)
    a, b = np.empty((20, 30)), np.empty((20, 30))
    assert f(a, generator=1) is a
    f(b, generator=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, init.kaiming_uniform_(np.empty((20, 30)), generator=1))


def test_get_returns_callables_unchanged():
    def custom(w, generator=None):
        return w

    assert init.get(custom) is custom
    assert init.get("XAVIER_UNIFORM_") is init.xavier_uniform_
    assert init.get("zeros") is init.zeros_


# ------------------------------------------------------------------------------------------------
# errors


def test_non_float_arrays_are_rejected():
    for bad in [np.zeros((3, 4), np.int32), np.zeros((3, 4), bool), np.zeros((3, 4), np.complex128)]:
        with pytest.raises(TypeError, match="floating dtype"):
            init.xavier_uniform_(bad)
        with pytest.raises(TypeError, match="floating dtype"):
            init.zeros_(bad)
    with pytest.raises(TypeError, match="NumPy array or a Parameter"):
        init.normal_([[0.0, 1.0]])


def test_read_only_arrays_are_rejected():
    w = np.zeros((3, 4))
    w.flags.writeable = False
    for fill in [init.uniform_, init.kaiming_normal_, init.ones_, init.default_init("tanh")]:
        with pytest.raises(ValueError, match=r"^\[\w+.*\] array is read-only"):  # ours, not NumPy's
            fill(w)


@pytest.mark.parametrize(
    "fill",
    [
        init.xavier_uniform_,
        init.xavier_normal_,
        init.kaiming_uniform_,
        init.kaiming_normal_,
        init.lecun_uniform_,
        init.lecun_normal_,
        init.variance_scaling_,
        init.default_init("relu"),
        init.pytorch_linear_default_,
    ],
)
def test_fan_initializers_need_two_dimensions(fill):
    w = np.zeros(5)
    with pytest.raises(ValueError, match=r"at least 2 dimensions .*\(5,\)"):
        fill(w)
    assert np.all(w == 0)


def test_pytorch_linear_default_validates_bias_before_touching_weight():
    w = np.zeros((3, 4))
    with pytest.raises(TypeError, match=r"\[pytorch_linear_default_\].*floating dtype"):
        init.pytorch_linear_default_(w, np.zeros(3, np.int64), generator=0)
    assert np.all(w == 0)


def test_eye_needs_two_dimensions():
    with pytest.raises(ValueError, match="2-D"):
        init.eye_(np.zeros((2, 2, 2)))


@pytest.mark.parametrize(
    "call",
    [
        lambda w: init.kaiming_uniform_(w, mode="fan_middle"),
        lambda w: init.kaiming_normal_(w, mode=None),
        lambda w: init.variance_scaling_(w, mode="FAN_SUM"),
    ],
)
def test_unknown_mode(call):
    w = np.zeros((3, 4))
    with pytest.raises(ValueError, match="unknown mode .*fan_in, fan_out, fan_avg"):
        call(w)
    assert np.all(w == 0)


def test_mode_is_case_insensitive_like_torch_and_tf():
    a, b = np.empty((20, 30)), np.empty((20, 30))
    init.variance_scaling_(a, 2.0, "FAN_AVG", "uniform", generator=0)
    init.variance_scaling_(b, 2.0, "fan_avg", "uniform", generator=0)
    np.testing.assert_array_equal(a, b)


def test_unknown_nonlinearity_and_distribution():
    w = np.zeros((3, 4))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'.*leaky_relu"):
        init.kaiming_uniform_(w, nonlinearity="swish")
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="unknown distribution 'cauchy'.*truncated_normal, normal, uniform"):
        init.variance_scaling_(w, distribution="cauchy")
    with pytest.raises(ValueError, match="unknown distribution"):
        init.default_init("relu", distribution="laplace")
    with pytest.raises(TypeError, match="a must be a real number"):
        init.kaiming_uniform_(w, a="0.1")
    assert np.all(w == 0)


def test_bad_generators():
    w = np.zeros((3, 4))
    for bad in ["seed", 1.5, True, np.random.RandomState(0)]:
        with pytest.raises(TypeError, match="generator must be"):
            init.xavier_uniform_(w, generator=bad)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        init.normal_(w, generator=-1)
    assert np.all(w == 0)


def test_bad_distribution_parameters():
    w = np.zeros((3, 4))
    with pytest.raises(ValueError, match="a <= b"):
        init.uniform_(w, 1.0, 0.0)
    with pytest.raises(ValueError, match="std must be >= 0"):
        init.normal_(w, 0.0, -1.0)
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(w, a=1.0, b=1.0)
    with pytest.raises(ValueError, match="std must be > 0"):
        init.trunc_normal_(w, std=0.0)
    with pytest.raises(ValueError, match="mass"):
        init.trunc_normal_(w, mean=0.0, std=1.0, a=5.0, b=6.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        init.variance_scaling_(w, scale=0.0)
    with pytest.raises(ValueError, match="NaN"):
        init.constant_(w, float("nan"))
    assert np.all(w == 0)


def test_default_init_errors():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*tanh.*selu"):
        init.default_init("swish")
    with pytest.raises(ValueError, match="only applies to leaky_relu"):
        init.default_init("tanh", param=0.2)
    with pytest.raises(ValueError, match="unknown mode"):
        init.default_init("relu", mode="fan")


def test_get_errors():
    with pytest.raises(ValueError, match="unknown initializer 'bogus'; valid names: .*he_normal.*xavier_uniform"):
        init.get("bogus")
    with pytest.raises(TypeError, match="name or a callable"):
        init.get(3)
