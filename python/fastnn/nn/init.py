"""Weight initializers: the ``torch.nn.init`` API on NumPy arrays, plus LeCun, Keras-style variance
scaling and the per-activation defaults of seed 002 (Hands-On ML 1st ed., table 11-1).

Every initializer fills its array **in place**, keeps its dtype (float32 stays float32) and returns
it. It also accepts a ``Parameter`` (anything whose ``.data`` is a NumPy array): ``.data`` is
filled and the ``Parameter`` returned. ``generator`` is an ``np.random.Generator``, an int seed, or
None (a fresh ``np.random.default_rng()``). Values are drawn in float64 and then rounded to the
array's dtype, so one seed gives the same numbers (up to rounding) for float32 and float64.

Every Glorot/He/LeCun rule is one variance-scaling rule, Var(W) = scale / n, where n is fan_in,
fan_out or fan_avg = (fan_in + fan_out) / 2, and the draw is U[-r, r] with r = √(3·scale/n) or
N(0, σ²) with σ = √(scale/n):

  ===============  =====  =======  ===============================================================
  rule             scale  n        uniform r / normal σ
  ===============  =====  =======  ===============================================================
  Xavier (Glorot)  gain²  fan_avg  r = gain·√(6/(fan_in+fan_out)),  σ = gain·√(2/(fan_in+fan_out))
  He (Kaiming)     gain²  fan_in   r = gain·√(3/fan_in),  σ = gain/√fan_in   (ReLU, gain √2:
                                   r = √(6/fan_in),  σ = √(2/fan_in))
  LeCun            1      fan_in   r = √(3/fan_in),  σ = √(1/fan_in)
  ===============  =====  =======  ===============================================================
"""

import math
import numbers

import numpy as np

__all__ = [
    "VarianceScaling",
    "calculate_gain",
    "constant_",
    "default_init",
    "eye_",
    "get",
    "init_for",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "normal_",
    "ones_",
    "pytorch_linear_default_",
    "trunc_normal_",
    "uniform_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
_DISTRIBUTION_ALIASES = {"untruncated_normal": "normal"}  # Keras 2.x/3 name for the plain normal

_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)
NONLINEARITIES = _LINEAR_FNS + ("sigmoid", "tanh", "relu", "leaky_relu", "selu")

# Std of N(0, 1) truncated to [-2, 2]: √(1 − 4φ(2)/(Φ(2) − Φ(−2))) (Keras VarianceScaling).
_TRUNC2_STD = 0.87962566103423978


# ----------------------------------------------------------------------------------------------
# argument checks


def _target(tensor, op):
    """The NumPy array to fill: the array itself or a Parameter's ``.data`` view, validated."""
    arr = tensor
    if not isinstance(arr, np.ndarray):
        arr = getattr(tensor, "data", None)
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"[{op}] expected a NumPy array or a Parameter, got {type(tensor).__name__}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"[{op}] array must have a floating dtype (float32 or float64), got {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"[{op}] array is read-only (flags.writeable is False); initializers fill in place")
    return arr


def _generator(generator, op):
    if generator is None:
        return np.random.default_rng()
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, (numbers.Integral, np.integer)) and not isinstance(generator, bool):
        if generator < 0:
            raise ValueError(f"[{op}] generator seed must be >= 0, got {generator}")
        return np.random.default_rng(int(generator))
    raise TypeError(
        f"[{op}] generator must be an np.random.Generator, an int seed or None, "
        f"got {type(generator).__name__}"
    )


def _real(value, name, op):
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"[{op}] {name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"[{op}] {name} must not be NaN")
    return value


def _mode(mode, op):
    m = mode.lower() if isinstance(mode, str) else mode
    if m not in MODES:
        raise ValueError(f"[{op}] unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    return m


def _distribution(distribution, op):
    d = distribution.lower() if isinstance(distribution, str) else distribution
    d = _DISTRIBUTION_ALIASES.get(d, d)
    if d not in DISTRIBUTIONS:
        raise ValueError(
            f"[{op}] unknown distribution {distribution!r}; valid distributions: "
            f"{', '.join(DISTRIBUTIONS + tuple(_DISTRIBUTION_ALIASES))}"
        )
    return d


# ----------------------------------------------------------------------------------------------
# gains and fans


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (torch.nn.init.calculate_gain's values).

    linear / conv* / sigmoid: 1; tanh: 5/3; relu: √2; leaky_relu: √(2/(1 + slope²)) with
    slope = param (default 0.01); selu: 3/4.

    Args:
        nonlinearity: one of NONLINEARITIES (torch.nn.functional names).
        param: negative slope for leaky_relu.
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, (numbers.Real, np.floating, np.integer)):
            raise ValueError(f"[calculate_gain] negative_slope {param!r} is not a valid number")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4  # found empirically by PyTorch (pytorch/pytorch#50664)
    raise ValueError(
        f"[calculate_gain] unsupported nonlinearity {nonlinearity!r}; valid: {', '.join(NONLINEARITIES)}"
    )


def _calculate_fan_in_and_fan_out(tensor, op="_calculate_fan_in_and_fan_out"):
    """(fan_in, fan_out) of a weight shaped like PyTorch's: (out, in, *kernel).

    fan_in = in · receptive, fan_out = out · receptive, receptive = prod(kernel) (1 for Linear).

    Args:
        tensor: array (or Parameter, or shape tuple) with at least 2 dimensions.
    """
    if isinstance(tensor, tuple):
        shape = tensor
    else:
        shape = getattr(tensor, "shape", None)
        if shape is None:
            raise TypeError(f"[{op}] expected an array, got {type(tensor).__name__}")
    if len(shape) < 2:
        raise ValueError(
            f"[{op}] fan in and fan out need at least 2 dimensions (out, in, *kernel), "
            f"got shape {tuple(shape)}"
        )
    receptive = int(np.prod(shape[2:], dtype=np.int64))
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def _calculate_correct_fan(tensor, mode, op="_calculate_correct_fan"):
    """fan_in, fan_out, or fan_avg = (fan_in + fan_out) / 2 (fan_avg as in TF's variance scaling)."""
    mode = _mode(mode, op)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor, op)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


# ----------------------------------------------------------------------------------------------
# plain fills


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b).

    Args:
        tensor: float array (any shape), filled in place.
        a, b: bounds, a <= b.
    """
    arr = _target(tensor, "uniform_")
    a, b = _real(a, "a", "uniform_"), _real(b, "b", "uniform_")
    if not a <= b:
        raise ValueError(f"[uniform_] expects a <= b, got a={a}, b={b}")
    rng = _generator(generator, "uniform_")
    arr[...] = rng.uniform(a, b, size=arr.shape)
    return tensor


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std²).

    Args:
        tensor: float array (any shape), filled in place.
        std: standard deviation, >= 0.
    """
    arr = _target(tensor, "normal_")
    mean, std = _real(mean, "mean", "normal_"), _real(std, "std", "normal_")
    if std < 0:
        raise ValueError(f"[normal_] std must be >= 0, got {std}")
    rng = _generator(generator, "normal_")
    arr[...] = rng.normal(mean, std, size=arr.shape)
    return tensor


def _phi_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _truncated_standard_normal(rng, n, lo, hi, op):
    """n draws of N(0, 1) restricted to [lo, hi], by rejection (exact; redraws in oversized batches)."""
    accept = _phi_cdf(hi) - _phi_cdf(lo)
    if accept < 0.01:
        raise ValueError(
            f"[{op}] [a, b] holds only {accept:.2e} of the normal's mass (mean too far outside [a, b]); "
            "rejection sampling needs at least 1%"
        )
    out = np.empty(n)
    filled = 0
    while filled < n:
        need = n - filled
        draw = rng.standard_normal(min(int(need / accept * 1.1) + 32, 1 << 22))  # bounded memory
        keep = draw[(draw >= lo) & (draw <= hi)][:need]
        out[filled : filled + keep.size] = keep
        filled += keep.size
    return out


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill with N(mean, std²) truncated to [a, b] (values outside are redrawn).

    Exact rejection sampling (torch inverts the CDF instead: same distribution, different numbers);
    raises if [a, b] holds less than 1% of N(mean, std²)'s mass.

    Args:
        tensor: float array (any shape), filled in place.
        std: standard deviation before truncation, > 0.
        a, b: absolute cut-offs, a < b.
    """
    op = "trunc_normal_"
    arr = _target(tensor, op)
    mean, std = _real(mean, "mean", op), _real(std, "std", op)
    a, b = _real(a, "a", op), _real(b, "b", op)
    if std <= 0:
        raise ValueError(f"[{op}] std must be > 0, got {std}")
    if not a < b:
        raise ValueError(f"[{op}] expects a < b, got a={a}, b={b}")
    rng = _generator(generator, op)
    z = _truncated_standard_normal(rng, arr.size, (a - mean) / std, (b - mean) / std, op)
    # clip: mean + std·z can round a hair past a cut-off
    arr[...] = np.clip(mean + std * z, a, b).reshape(arr.shape)
    return tensor


def constant_(tensor, val, generator=None):
    """Fill with the value val. (generator is ignored: every initializer takes it, for one call form.)"""
    arr = _target(tensor, "constant_")
    arr[...] = _real(val, "val", "constant_")
    return tensor


def zeros_(tensor, generator=None):
    """Fill with 0. (generator is ignored.)"""
    _target(tensor, "zeros_")[...] = 0
    return tensor


def ones_(tensor, generator=None):
    """Fill with 1. (generator is ignored.)"""
    _target(tensor, "ones_")[...] = 1
    return tensor


def eye_(tensor, generator=None):
    """Fill a 2-D array with the identity (ones on the main diagonal, rectangles too). (generator is ignored.)

    Args:
        tensor: (out, in) float array.
    """
    arr = _target(tensor, "eye_")
    if arr.ndim != 2:
        raise ValueError(f"[eye_] only 2-D arrays are supported, got shape {arr.shape}")
    arr[...] = 0
    np.fill_diagonal(arr, 1)
    return tensor


# ----------------------------------------------------------------------------------------------
# variance scaling and its named cases


def _scale_fill(tensor, scale, mode, distribution, generator, op):
    """Var(W) = scale/n(mode): U(±√(3·scale/n)) | N(0, scale/n) | N(0, σ'²) cut at ±2σ', σ' = σ/0.8796."""
    arr = _target(tensor, op)
    scale = _real(scale, "scale", op)
    if not scale > 0:
        raise ValueError(f"[{op}] scale must be > 0, got {scale}")
    mode = _mode(mode, op)
    distribution = _distribution(distribution, op)
    n = _calculate_correct_fan(arr, mode, op)
    rng = _generator(generator, op)
    if arr.size == 0:  # nothing to fill (and n may be 0)
        return tensor
    std = math.sqrt(scale / n)
    if distribution == "uniform":
        limit = math.sqrt(3.0) * std
        arr[...] = rng.uniform(-limit, limit, size=arr.shape)
    elif distribution == "normal":
        arr[...] = rng.normal(0.0, std, size=arr.shape)
    else:  # truncated at ±2σ', σ' chosen so that the truncated distribution has std σ
        std_raw = std / _TRUNC2_STD
        z = _truncated_standard_normal(rng, arr.size, -2.0, 2.0, op)
        arr[...] = np.clip(std_raw * z, -2 * std_raw, 2 * std_raw).reshape(arr.shape)
    return tensor


def variance_scaling_(tensor, scale=1.0, mode="fan_in", distribution="truncated_normal", generator=None):
    """Keras/TF VarianceScaling: Var(W) = scale / n, n = fan_in, fan_out or (fan_in + fan_out) / 2.

    distribution "uniform": U[-r, r], r = √(3·scale/n); "normal" (alias "untruncated_normal"):
    N(0, scale/n); "truncated_normal": N(0, σ'²) cut at ±2σ', σ' = √(scale/n) / 0.8796 so the
    result still has variance scale/n (modern Keras). The seed's TF1
    ``tf.contrib.layers.variance_scaling_initializer()`` (factor=2, FAN_IN, uniform=False) is
    ``variance_scaling_(w, 2.0, "fan_in")`` up to its cruder 1.3 variance correction; note that
    TF1's ``distribution="normal"`` meant truncated, here it means the plain normal.

    Args:
        tensor: (out, in, *kernel) float array, filled in place.
        scale: > 0. mode: fan_in | fan_out | fan_avg. distribution: truncated_normal | normal | uniform.
    """
    return _scale_fill(tensor, scale, mode, distribution, generator, "variance_scaling_")


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot uniform: U[-r, r], r = gain · √(6 / (fan_in + fan_out)) (seed 002, equation 11-1).

    Args:
        tensor: (out, in, *kernel) float array, filled in place.
    """
    gain = _real(gain, "gain", "xavier_uniform_")
    return _scale_fill(tensor, gain * gain, "fan_avg", "uniform", generator, "xavier_uniform_")


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot normal: N(0, σ²), σ = gain · √(2 / (fan_in + fan_out)) (seed 002, equation 11-1).

    Args:
        tensor: (out, in, *kernel) float array, filled in place.
    """
    gain = _real(gain, "gain", "xavier_normal_")
    return _scale_fill(tensor, gain * gain, "fan_avg", "normal", generator, "xavier_normal_")


def _kaiming_scale(a, nonlinearity, op):
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(
            f"[{op}] unsupported nonlinearity {nonlinearity!r}; valid: {', '.join(NONLINEARITIES)}"
        )
    if nonlinearity == "leaky_relu":
        return 2.0 / (1 + _real(a, "a", op) ** 2)  # gain², exactly (√2² is 2.0000000000000004)
    return {"relu": 2.0, "tanh": 25.0 / 9, "selu": 9.0 / 16}.get(nonlinearity, 1.0)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He uniform: U[-r, r], r = gain · √(3 / fan); ReLU (gain √2, fan_in) gives r = √(6 / fan_in).

    Args:
        tensor: (out, in, *kernel) float array, filled in place.
        a: negative slope of the leaky_relu that follows (0 is plain ReLU).
        mode: fan_in (preserves forward variance) | fan_out (backward) | fan_avg (extension, from TF).
        nonlinearity: a calculate_gain name.
    """
    scale = _kaiming_scale(a, nonlinearity, "kaiming_uniform_")
    return _scale_fill(tensor, scale, mode, "uniform", generator, "kaiming_uniform_")


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He normal: N(0, σ²), σ = gain / √fan; ReLU (gain √2, fan_in) gives σ = √(2 / fan_in).

    Args: as kaiming_uniform_.
    """
    scale = _kaiming_scale(a, nonlinearity, "kaiming_normal_")
    return _scale_fill(tensor, scale, mode, "normal", generator, "kaiming_normal_")


def lecun_uniform_(tensor, generator=None):
    """LeCun uniform: U[-r, r], r = √(3 / fan_in) (variance 1/fan_in).

    Args:
        tensor: (out, in, *kernel) float array, filled in place.
    """
    return _scale_fill(tensor, 1.0, "fan_in", "uniform", generator, "lecun_uniform_")


def lecun_normal_(tensor, generator=None):
    """LeCun normal: N(0, 1/fan_in), the initialization SELU's self-normalization assumes.

    Plain normal, as in the formula (Keras's ``lecun_normal`` truncates: use
    ``variance_scaling_(w, 1.0, "fan_in", "truncated_normal")``).

    Args:
        tensor: (out, in, *kernel) float array, filled in place.
    """
    return _scale_fill(tensor, 1.0, "fan_in", "normal", generator, "lecun_normal_")


def pytorch_linear_default_(weight, bias=None, generator=None):
    """torch.nn.Linear's reset_parameters distribution (not its numbers: the RNGs differ).

    weight: kaiming_uniform_(a=√5), i.e. U(±1/√fan_in); bias: U(±1/√fan_in). Also Conv2d's default.

    Args:
        weight: (out, in, *kernel) float array. bias: (out,) float array or None.
        generator: one generator drives both (an int seed is turned into one generator first).
    """
    op = "pytorch_linear_default_"
    rng = _generator(generator, op)
    w = _target(weight, op)
    fan_in, _ = _calculate_fan_in_and_fan_out(w, op)
    if bias is not None:
        _target(bias, op)  # validate before touching the weight
    kaiming_uniform_(weight, a=math.sqrt(5), generator=rng)
    if bias is not None:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound, generator=rng)
    return weight, bias


# ----------------------------------------------------------------------------------------------
# per-activation defaults (seed 002, table 11-1) and lookup by name


class VarianceScaling:
    """An initializer object f(tensor, generator=None) for Var(W) = scale / n(mode).

    Attributes:
        scale, mode, distribution: as in variance_scaling_. name: what it is, for repr.
    """

    def __init__(self, scale, mode, distribution, name="variance_scaling"):
        op = "VarianceScaling"
        self.scale = _real(scale, "scale", op)
        if not self.scale > 0:
            raise ValueError(f"[{op}] scale must be > 0, got {scale}")
        self.mode = _mode(mode, op)
        self.distribution = _distribution(distribution, op)
        self.name = name

    def __call__(self, tensor, generator=None):
        return _scale_fill(tensor, self.scale, self.mode, self.distribution, generator, self.name)

    def __repr__(self):
        return (
            f"{self.name}(scale={self.scale:g}, mode={self.mode!r}, distribution={self.distribution!r})"
        )


# (rule, scale, default mode, default distribution); scale is Var(W)·n.
_TABLE_11_1 = {
    "linear": ("glorot", 1.0, "fan_avg", "uniform"),  # Keras Dense / tf.layers.dense default
    "sigmoid": ("glorot", 1.0, "fan_avg", "uniform"),  # table 11-1 "logistic"
    "tanh": ("glorot_x4", 16.0, "fan_avg", "uniform"),  # table 11-1: r and σ times 4
    "relu": ("he", 2.0, "fan_in", "uniform"),
    "selu": ("lecun", 1.0, "fan_in", "normal"),
}
_ACTIVATION_ALIASES = {
    None: "linear",
    "identity": "linear",
    "softmax": "linear",
    "logistic": "sigmoid",
    "leaky_relu": "relu",
    "leakyrelu": "relu",
    "prelu": "relu",
    "rrelu": "relu",
    "elu": "relu",
}
_SLOPED = ("leaky_relu", "leakyrelu", "prelu", "rrelu")
ACTIVATIONS = ("linear", "identity", "softmax", "sigmoid", "logistic", "tanh",
               "relu", "leaky_relu", "prelu", "rrelu", "elu", "selu")  # fmt: skip


def default_init(activation, distribution=None, mode=None, param=None):
    """The initializer seed 002's table 11-1 recommends for a layer followed by `activation`.

    ==========================  =====================  ==================================  ========
    activation                  rule                   uniform r  /  normal σ              default
    ==========================  =====================  ==================================  ========
    None, linear, identity,     Xavier (Glorot)        √(6/(fi+fo))  /  √(2/(fi+fo))       uniform
    softmax, sigmoid, logistic
    tanh                        Xavier × 4 (table)     4·√(6/(fi+fo))  /  4·√(2/(fi+fo))   uniform
    relu, leaky_relu, prelu,    He                     √(6/fi)  /  √(2/fi)                 uniform
    rrelu, elu
    selu                        LeCun                  √(3/fi)  /  √(1/fi)                 normal
    ==========================  =====================  ==================================  ========
    (fi = fan_in, fo = fan_out.)

    Notes on the table: the seed (a Korean translation of Hands-On ML 1st ed., chapter 11) shows
    table 11-1's cells only as images, so its factors cannot be read from the seed's text; they are
    taken from the book's table, which puts the factor 4 on tanh. Glorot & Bengio (2010) derived
    plain Xavier for tanh-like units, and the deeplearning.net tutorial puts the ×4 on the
    *logistic* sigmoid instead (its slope at 0 is 1/4); torch uses gain 5/3 for tanh. We follow
    the table, as the spec asks; for the other convention use ``xavier_uniform_(w, gain=4)`` for
    sigmoid and ``default_init("sigmoid")`` for tanh. The table's ReLU row is √2·√(6/(fan_in+fan_out)),
    i.e. He with fan_avg; the default here is He's own fan_in (the seed's
    ``variance_scaling_initializer()`` default, and torch's); ``mode="fan_avg"`` gives the row as
    printed.

    Args:
        activation: one of ACTIVATIONS or None (case-insensitive).
        distribution: "uniform" | "normal" | "truncated_normal"; None for the default above.
        mode: fan_in | fan_out | fan_avg; None for the rule's own (fan_avg for Xavier, fan_in for He/LeCun).
        param: negative slope for leaky_relu / prelu / rrelu (He gain √(2/(1+slope²))); None = √2 (ReLU).
    Returns:
        a VarianceScaling: f(tensor, generator=None) fills tensor in place and returns it.
    """
    op = "default_init"
    key = activation.lower().replace("-", "_") if isinstance(activation, str) else activation
    if key not in _TABLE_11_1 and key not in _ACTIVATION_ALIASES:
        raise ValueError(f"[{op}] unknown activation {activation!r}; valid: None, {', '.join(ACTIVATIONS)}")
    row = _ACTIVATION_ALIASES.get(key, key)
    rule, scale, default_mode, default_distribution = _TABLE_11_1[row]
    if param is not None:
        if key not in _SLOPED:
            raise ValueError(
                f"[{op}] param (a negative slope) only applies to {', '.join(_SLOPED)}, not {activation!r}"
            )
        scale = _kaiming_scale(param, "leaky_relu", op)
    return VarianceScaling(
        scale,
        default_mode if mode is None else mode,
        default_distribution if distribution is None else distribution,
        name=f"default_init[{activation}: {rule}]",
    )


init_for = default_init

_BY_NAME = {
    "uniform": uniform_,
    "normal": normal_,
    "trunc_normal": trunc_normal_,
    "truncated_normal": trunc_normal_,
    "zeros": zeros_,
    "ones": ones_,
    "eye": eye_,
    "identity": eye_,
    "xavier_uniform": xavier_uniform_,
    "glorot_uniform": xavier_uniform_,
    "xavier_normal": xavier_normal_,
    "glorot_normal": xavier_normal_,
    "kaiming_uniform": kaiming_uniform_,  # defaults (a=0, fan_in) are He for ReLU
    "he_uniform": kaiming_uniform_,
    "kaiming_normal": kaiming_normal_,
    "he_normal": kaiming_normal_,  # plain normal σ = √(2/fan_in) (Keras's he_normal truncates)
    "lecun_uniform": lecun_uniform_,
    "lecun_normal": lecun_normal_,
    "variance_scaling": variance_scaling_,
}


def get(name_or_callable):
    """The initializer for a name ("xavier_uniform", "he_normal", "zeros", ...) or a callable as is.

    Names are case-insensitive and may end in "_" (torch spelling). Each returned function is
    called as f(tensor, generator=None).
    """
    if callable(name_or_callable):
        return name_or_callable
    if not isinstance(name_or_callable, str):
        raise TypeError(
            f"[get] expected an initializer name or a callable, got {type(name_or_callable).__name__}"
        )
    key = name_or_callable.lower().rstrip("_")
    if key not in _BY_NAME:
        raise ValueError(
            f"[get] unknown initializer {name_or_callable!r}; valid names: {', '.join(sorted(_BY_NAME))}"
        )
    return _BY_NAME[key]
