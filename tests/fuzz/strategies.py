"""Hypothesis strategies that write fuzz cases: one line of Python each, run after
``from tests.fuzz.prelude import *`` (see prelude.py for A, L, I, Py, small_model, ok_*).

Most arguments are drawn consistent with each other (so a case gets past the first check and
reaches the code behind it), and each has a chance to be replaced by a hostile value: another
dtype, rank, extent or layout, a scalar where an array goes or the reverse, NaN/inf, a huge
broadcast view, a wrong type. A case calls ``accepted("why")`` after a call whose input is invalid
beyond doubt, so that accepting it silently is reported too ("accepted"), and starts with
``VALID = 1`` when every input is valid, so that refusing it is reported ("refused").
"""

from hypothesis import strategies as st

# --- values ------------------------------------------------------------------------------------

DTYPE_CODES = ["f4", "f8", "f2", "i8", "i4", "u1", "b", "c8", "c16", "O"]
LAYOUTS = ["C", "F", "strided", "neg", "ro", "bcast", "T"]
FILLS = ["n", "0", "nan", "inf", "-inf", "big", "huge", "tiny"]
EXTENTS = [0, 1, 2, 3, 5, 7, 16, 33]
HUGE = ["2**31 + 7", "2**32 + 1", "2**40", "2**62"]
NON_ARRAYS = ["None", "1.5", "3", "True", "'x'", "[[1.0, 2.0], [3.0, 4.0]]", "np.float32(2.0)", "np.float64('nan')",
              "object()", "(1, 2)"]


def _arr(shape, dtype="f4", layout="C", fill="n", seed=0):
    shape = "(" + "".join(f"{s}, " for s in shape) + ")"
    return f"A({shape}, {dtype!r}, {layout!r}, {fill!r}, {seed})"


@st.composite
def hostile_array(draw):
    """Any array or non-array at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(NON_ARRAYS))
    ndim = draw(st.integers(0, 4))
    shape = [draw(st.sampled_from(EXTENTS)) for _ in range(ndim)]
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "bcast" and ndim and draw(st.booleans()):
        shape[draw(st.integers(0, ndim - 1))] = draw(st.sampled_from(HUGE))
    return _arr(shape, draw(st.sampled_from(DTYPE_CODES)), layout, draw(st.sampled_from(FILLS)), draw(st.integers(0, 3)))


class Args:
    """Draws a call's arguments: arrays of the case's dtype and chosen shape, each with a chance
    of a hostile layout or fill, or of being replaced by anything at all. Tracks whether the call
    is still plainly valid (`valid`: then it must not raise) and finite (`clean`: then its result
    must be finite)."""

    def __init__(self, draw, dtype=None):
        self.draw = draw
        self.dtype = dtype or draw(st.sampled_from(["f4"] * 6 + ["f8"] * 3 + DTYPE_CODES))
        self.valid = self.dtype in ("f4", "f8")
        self.clean = self.valid
        # 1 in `rate` arguments is mutated, at most `budget` per case (one bad argument reaches the
        # check behind the others; 0: none)
        self.rate = draw(st.sampled_from([0, 0, 10, 5, 3]))
        self.budget = draw(st.sampled_from([1, 1, 2, 3]))

    def spoil(self):
        self.valid = self.clean = False

    def _mutate(self):
        if self.rate and self.budget and self.draw(st.integers(0, self.rate - 1)) == 0:
            self.budget -= 1
            return True
        return False

    def array(self, shape, dtype=None, fill_ok=True, layouts=None):
        if self._mutate():
            self.spoil()
            return self.draw(hostile_array())
        layout = self.draw(st.sampled_from(["C"] * 6 + (layouts or LAYOUTS)))
        fill = "n"
        if fill_ok and self.draw(st.integers(0, 5)) == 0:
            fill = self.draw(st.sampled_from(FILLS))
            self.clean &= fill in ("n", "0", "tiny")
        return _arr(shape, dtype or self.dtype, layout, fill, self.draw(st.integers(0, 3)))

    def value(self, good, bad=(), odd=()):
        """A Python argument: one of `good`; mutated, one of `bad` or anything else (invalid), or one
        of `odd` (allowed to raise or not)."""
        if odd and self.draw(st.integers(0, 9)) == 0:
            self.spoil()
            return self.draw(st.sampled_from(list(odd)))
        if self._mutate():
            self.spoil()
            return self.draw(st.sampled_from(list(bad) + NON_ARRAYS))
        return self.draw(st.sampled_from(list(good)))

    def bad_value(self, good, bad):
        """(value, is_bad): like value(), with bad values drawn from `bad` only, and reported, so
        that the case can require an error."""
        if bad and self._mutate():
            self.spoil()
            return self.draw(st.sampled_from(list(bad))), True
        return self.draw(st.sampled_from(list(good))), False

    def extent(self, small=(1, 2, 3, 5, 7, 16, 33)):
        if self.draw(st.integers(0, 7)) == 0:
            self.valid = False  # empty arrays may be refused
            return 0
        return self.draw(st.sampled_from(list(small)))

    def code(self, lines):
        return ("VALID = 1; " if self.valid else "") + "; ".join(lines)


def accept(why):
    """The oracle line after a call that must raise: `why` names the invalid input (quotes dropped,
    so that the reproducer stays one double-quoted shell line)."""
    return f"accepted({why.replace(chr(39), '')!r})"


def _check(a, result="r", shape=None):
    """The success oracle for a call whose result is `result`: finite and, if given (and the inputs
    are as drawn), of `shape`."""
    if shape and a.valid:
        return f"ok_array({result}, {shape}, finite={a.clean})"
    return f"ok_finite({result})" if a.clean else f"{result}"


# --- fastnn.functional and the _C kernels --------------------------------------------------------

POINTWISE = ["sigmoid", "tanh", "relu", "selu", "leaky_relu", "elu", "rrelu"]
SCALAR_BAD = ["float('nan')", "float('inf')", "-1.0", "2**64", "-2**63", "1e300"]
ACTIVATIONS = ["'none'", "'relu'", "'leaky_relu'", "'sigmoid'", "'tanh'"]
REDUCTIONS = ["'mean'", "'sum'"]
BAD_REDUCTIONS = ["None", "'MEAN'", "'none'"]  # the kernels reduce: 'none' is PyTorch's, not offered


# A kernel on a broadcast view (no memory) whose extents need more than 2**31 elements or a
# dimension over 2**31: a copy, if the kernel makes one, cannot be allocated (MemoryError).
HUGE_VIEWS = ["(2**31 + 7, 5)", "(5, 2**31 + 7)", "(2**16, 2**16 + 1)", "(2**33, 1)", "(3, 2**40)", "(2, 2**30, 3)"]
HUGE_CALLS = [
    "F.relu_forward(v)", "F.sigmoid_forward(v)", "F.tanh_forward(v)", "F.selu_forward(v)", "F.leaky_relu_forward(v)",
    "F.elu_forward(v)", "F.rrelu_forward(v)", "F.softmax_forward(v)", "F.log_softmax_forward(v)", "F.relu_backward(v, v)",
    "F.sigmoid_backward(v, v)", "F.tanh_backward(v, v)", "F.elu_backward(v, v)", "F.softmax_backward(v, v)",
    "F.dropout_forward(v, 0.5)", "F.dropout_backward(v, np.broadcast_to(True, v.shape), 0.5)", "F.first_nonfinite(v)",
    "F.mse_forward(v, v)", "F.mse_forward_backward(v, v)", "F.binary_cross_entropy_with_logits_forward(v, v)",
    "F.cross_entropy_forward(v, np.broadcast_to(np.int64(0), v.shape[:1]))",
    "F.cross_entropy_forward_backward(v, np.broadcast_to(np.int64(0), v.shape[:1]))",
    "F.matmul(v, np.ones((v.shape[-1], 2), v.dtype))", "F.linear_forward(v, np.ones((2, v.shape[-1]), v.dtype))",
    "F.batch_norm_forward(v, None, None, None, None, True)", "F.batch_norm_affine(v, np.ones(v.shape[1], v.dtype), np.ones(v.shape[1], v.dtype))",
    "F.prelu_forward(v, np.ones(1, v.dtype))", "F.maxout_forward(v, 1)", "F.batch_norm_relu_forward(v, None, None, None, None, True)",
]


# shape-keeping pipelines (fastnn.augment's (kind, fields) pairs), and refused ones
AUGMENT_OPS = [
    "[]", "[('hflip', {'p': 0.5}), ('vflip', {'p': 1.0})]", "[('shift', {'max_dy': 2, 'max_dx': 40, 'edge': True})]",
    "[('affine', {'degrees_lo': -30.0, 'degrees_hi': 30.0, 'scale_lo': 0.01, 'scale_hi': 3.0, 'translate_x': 1.0, "
    "'shear_x_lo': -89.0, 'shear_y_hi': 89.0})]", "[('affine', {'degrees_hi': 360.0, 'nearest': True, 'fill': 1.0})]",
    "[('noise', {'sigma': 0.5, 'clip': True})]", "[('erase', {'p': 1.0, 'random_value': True, 'area_hi': 1.0})]",
    "[('jitter', {'brightness_lo': 0.0, 'brightness_hi': 2.0, 'contrast_lo': 0.0, 'contrast_hi': 2.0, 'clamp': True})]",
]
AUGMENT_BAD_OPS = [
    "[('blur', {})]", "[('hflip', {'p': 2.0})]", "[('shift', {'max_dy': -1})]", "'hflip'", "[('hflip',)]",
    "[('affine', {'scale_lo': 0.0})]", "[('crop', {'out_h': 999, 'out_w': 1})]", "[('noise', {'sigma': float('nan')})]",
    "[('shift', {'max_dy': 1e300})]", "[('erase', {'area_lo': 0.5, 'area_hi': 0.1})]",
]


@st.composite
def huge_view_case(draw):
    dt = draw(st.sampled_from(["f4", "f8"]))
    call = draw(st.sampled_from(HUGE_CALLS))
    return f"v = A({draw(st.sampled_from(HUGE_VIEWS))}, {dt!r}, 'bcast'); r = {call}"


@st.composite
def functional_case(draw):
    if draw(st.integers(0, 29)) == 0:  # rare: each one that crashes costs two worker starts
        return draw(huge_view_case())
    kernel = draw(st.sampled_from([
        "matmul", "bmm", "linear_forward", "linear_backward", "pointwise_forward", "pointwise_backward", "prelu",
        "softmax", "maxout", "cross_entropy", "bce", "mse", "batch_norm", "batch_norm_backward", "batch_norm_fold",
        "batch_norm_relu", "dropout", "first_nonfinite", "optim_step", "clip", "augment"]))
    a = Args(draw)
    n, c = a.extent(), a.extent()
    lines = []
    if kernel in ("matmul", "bmm"):
        k = a.extent()
        batch = (a.extent(),) if kernel == "bmm" else ()
        x, w = a.array(batch + (n, k)), a.array(batch + (k, c))
        out = draw(st.sampled_from(["None", "None", "fresh", "alias-a", "alias-b", "overlap", "hostile"]))
        lines += [f"a = {x}", f"b = {w}"]
        if out == "fresh":
            out = _arr(batch + (n, c), a.dtype, "C", "n")
        elif out.startswith("alias"):
            a.spoil()
            out = out[-1]
        elif out == "overlap":
            a.spoil()
            out = "a.reshape(-1)[:0].reshape(0, 0) if getattr(a, 'size', 1) == 0 else a"
        elif out == "hostile":
            a.spoil()
            out = draw(hostile_array())
        lines.append(f"r = F.{kernel}(a, b, out={out})")
        lines.append(_check(a, "r", batch + (n, c)))
    elif kernel == "linear_forward":
        i = a.extent()
        act = a.value(ACTIVATIONS, ["'gelu'", "''", "None", "3"])
        lines.append(f"r = F.linear_forward({a.array((n, i))}, {a.array((c, i))}, "
                     f"{a.value(['None', _arr((c,), a.dtype)], [])}, {act}, {a.value(['0.01', '0.2'], SCALAR_BAD)})")
        lines.append(_check(a, "r", (n, c)))
    elif kernel == "linear_backward":
        i = a.extent()
        act = a.value(ACTIVATIONS, ["'gelu'", "None"])
        y = a.array((n, c)) if act != "'none'" or draw(st.booleans()) else "None"
        gw = a.value(["None", _arr((c, i), a.dtype)], [_arr((i, c), a.dtype), _arr((c, i), a.dtype, "F")])
        gb = a.value(["None", _arr((c,), a.dtype)], [_arr((c + 1,), a.dtype)])
        need_bias = a.value(["True", "False"])
        if gb != "None" and need_bias == "False":
            a.valid = False  # a bias gradient buffer without a bias gradient is refused
        lines.append(f"r = F.linear_backward({a.array((n, c))}, {a.array((n, i))}, {a.array((c, i))}, {y}, {act}, "
                     f"{a.value(['0.01', '0.5'], SCALAR_BAD + ['0.0'])}, {a.value(['True', 'False'])}, "
                     f"{need_bias}, {gw}, {gb})")
        lines.append(_check(a))
    elif kernel in ("pointwise_forward", "pointwise_backward"):
        name = draw(st.sampled_from(POINTWISE))
        shape = tuple(a.extent((1, 2, 3, 5, 16)) for _ in range(draw(st.integers(0, 4))))
        extra = {"leaky_relu": f", {a.value(['0.01', '-0.5', '2.0'], SCALAR_BAD)}",
                 "elu": f", {a.value(['1.0', '0.5'], SCALAR_BAD)}"}.get(name, "")
        if name == "rrelu":
            lo, hi = a.value(["0.125", "0.0"], SCALAR_BAD + ["0.5"]), a.value(["0.3333", "0.5"], SCALAR_BAD + ["-0.1"])
            train = a.value(["True", "False"])
            seed = a.value(["0", "7"], ["-1", "2**64", "1.5"])
            lines.append(f"x = {a.array(shape)}; r = F.rrelu_forward(x, {lo}, {hi}, {train}, {seed}, 0)")
            if kernel == "pointwise_backward":
                lines.append(f"r = F.rrelu_backward({a.array(shape)}, r[1])")
            lines.append(_check(a))
        elif kernel == "pointwise_forward":
            lines.append(f"x = {a.array(shape)}; r = F.{name}_forward(x{extra})")
            lines.append(_check(a, "r", shape))
        else:
            lines.append(f"r = F.{name}_backward({a.array(shape)}, {a.array(shape)}{extra})")
            lines.append(_check(a, "r", shape))
    elif kernel == "prelu":
        rest = tuple(a.extent((1, 2, 3)) for _ in range(draw(st.integers(0, 2))))
        w = a.array((draw(st.sampled_from([c, 1])),))
        fn = draw(st.sampled_from(["forward", "backward"]))
        g = f"{a.array((n, c) + rest)}, " if fn == "backward" else ""
        lines.append(f"r = F.prelu_{fn}({g}{a.array((n, c) + rest)}, {w})")
        lines.append(_check(a))
    elif kernel == "softmax":
        log = draw(st.sampled_from(["", "log_"]))
        if draw(st.booleans()):
            lines.append(f"r = F.{log}softmax_forward({a.array((n, c))})")
        else:
            lines.append(f"r = F.{log}softmax_backward({a.array((n, c))}, {a.array((n, c))})")
        lines.append(_check(a, "r", (n, c)))
    elif kernel == "maxout":
        k = a.value(["1", "2", "3"], ["0", "-1", "2.5", "2**40"])
        kk = int(k) if k in ("1", "2", "3") else 2
        lines.append(f"y, am = F.maxout_forward({a.array((n, c * kk))}, {k})")
        if draw(st.booleans()):
            am = "am" if not a._mutate() else draw(st.sampled_from(
                [f"I(({n}, {c}), -5, 5)", f"I(({n}, {c}), 0, 2**40)", f"I(({n}, {c}), 0, 3, 'i4')", "am.T.copy()"]))
            if am != "am":
                a.spoil()
            lines.append(f"r = F.maxout_backward({a.array((n, c))}, {am}, {k})")
        else:
            lines.append("r = y")
        lines.append(_check(a))
    elif kernel == "cross_entropy":
        kind = a.value(["'ok'"], ["'neg'", "'big'", "'huge'", "'float'", "'i4'", "'bool'", "'f-int'", "'2d'"])
        fn = draw(st.sampled_from(["forward", "backward", "forward_backward"]))
        grad = f", {a.value(['1.0', '0.5'], SCALAR_BAD)}" if fn == "backward" else ""
        lines.append(f"r = F.cross_entropy_{fn}({a.array((n, c))}, L({n}, {c}, {kind}){grad}, "
                     f"{a.value(REDUCTIONS, BAD_REDUCTIONS)})")
        if kind in ("'neg'", "'big'", "'huge'") and n:
            lines.append("accepted('a label out of range')")
        lines.append(_check(a))
    elif kernel in ("bce", "mse"):
        name = {"bce": "binary_cross_entropy_with_logits", "mse": "mse"}[kernel]
        fn = draw(st.sampled_from(["forward", "backward", "forward_backward"]))
        grad = f", {a.value(['1.0', '2.0'], SCALAR_BAD)}" if fn == "backward" else ""
        shape = (n, c) if draw(st.integers(0, 3)) else (n,)
        lines.append(f"r = F.{name}_{fn}({a.array(shape)}, {a.array(shape)}{grad}, {a.value(REDUCTIONS, BAD_REDUCTIONS)})")
        lines.append(_check(a))
    elif kernel in ("batch_norm", "batch_norm_relu", "batch_norm_backward"):
        n = a.extent((2, 3, 7, 16))
        rest = tuple(a.extent((1, 2, 3)) for _ in range(draw(st.sampled_from([0, 0, 1, 2]))))
        x = a.array((n, c) + rest)
        w, b = a.value(["None", _arr((c,), a.dtype)], []), a.value(["None", _arr((c,), a.dtype)], [])
        rm, rv = a.value([_arr((c,), a.dtype)], [_arr((c,), a.dtype, "ro")]), a.value(
            [f"abs({_arr((c,), a.dtype)})"], [_arr((c,), a.dtype, "C", "nan"), f"-abs({_arr((c,), a.dtype)}) - 1"])
        if "-abs" in rv or "nan" in rv:
            a.spoil()
        train = a.value(["True", "False"], ["'yes'", "None"])
        mom, eps = a.value(["0.1", "0.0", "1.0"], ["-0.5", "1.5", "float('nan')"]), a.value(
            ["1e-5", "1e-3"], ["0.0", "-1.0", "float('nan')"])
        if kernel == "batch_norm_relu":
            p = a.value(["0.0", "0.5"], ["1.0", "-0.1", "float('nan')"])
            lines.append(f"x = {x}; r = F.batch_norm_relu_forward(x, {w}, {b}, {rm}, {rv}, {train}, {mom}, {eps}, {p}, 3, 4)")
            if draw(st.booleans()):
                lines.append(f"r = F.batch_norm_relu_backward({a.array((n, c) + rest)}, x, {w}, r[1], r[2], "
                             f"{a.value(['r[3]'], [_arr((n, c) + rest, 'u1'), _arr((n, c) + rest, 'b')])}, {train}, {p})")
        else:
            lines.append(f"x = {x}; r = F.batch_norm_forward(x, {w}, {b}, {rm}, {rv}, {train}, {mom}, {eps})")
            if kernel == "batch_norm_backward":
                lines.append(f"r = F.batch_norm_backward({a.array((n, c) + rest)}, x, {w}, "
                             f"{a.value(['r[1]'], [_arr((c + 1,), a.dtype)])}, {a.value(['r[2]'], [_arr((c,), a.dtype, 'C', 'inf')])}, {train})")
        lines.append(_check(a))
    elif kernel == "batch_norm_fold":
        vecs = [a.array((c,)) for _ in range(3)]
        lines.append(f"r = F.batch_norm_fold({vecs[0]}, {vecs[1]}, {vecs[2]}, abs({a.array((c,))}), "
                     f"{a.value(['1e-5'], ['0.0', '-1.0'])})")
        if draw(st.booleans()):
            lines.append(f"r = F.batch_norm_affine({a.array((n, c))}, r[0], r[1])")
        lines.append(_check(a))
    elif kernel == "dropout":
        shape = tuple(a.extent((1, 2, 3, 5, 16)) for _ in range(draw(st.integers(0, 4))))
        p = a.value(["0.0", "0.5", "0.9"], ["1.0", "-0.1", "float('nan')", "np.float32(0.5)"])
        lines.append(f"y, mask = F.dropout_forward({a.array(shape)}, {p}, {a.value(['0', '5'], ['-1', '2**64', '1.5'])}, "
                     f"{a.value(['0', '9'], ['-1', '2**64'])}, {a.value(['True', 'False'])})")
        if draw(st.booleans()):
            m = a.value(["mask"], [_arr(shape, "u1"), _arr(shape, "f4"), "mask[..., :0]" if shape else "mask"])
            lines.append(f"r = F.dropout_backward({a.array(shape)}, {m}, {p})")
        else:
            lines.append("r = (y, mask)")
        lines.append(_check(a))
    elif kernel == "first_nonfinite":
        shape = tuple(a.extent() for _ in range(draw(st.integers(0, 4))))
        lines.append(f"r = F.first_nonfinite({a.array(shape)}); ok_type(r, int)")
    elif kernel == "optim_step":
        size = a.extent((1, 6, 12))
        seg = a.value([f"np.array([[0, {size}, 3, 0]])"], [
            f"np.array([[0, {size + 5}, 3, 0]])", f"np.array([[{size}, 4, 3, 0]])", f"np.array([[-3, 2, 3, 0]])",
            f"np.array([[0, {size}, 3, {size * 4}]])", f"np.array([[0, {size}, 3, -1]])", "np.array([[0, 2**62, 3, 0]])",
            f"np.array([[0, {size}, 3]])", f"np.array([[0, {size}, 3, 0]], np.int32)", "np.zeros((0, 4), np.int64)"])
        step = draw(st.sampled_from(["sgd", "adagrad", "rmsprop", "adam"]))
        flat = ["C"]  # flat buffers, updated in place: C-contiguous and writeable
        p, g = a.array((size,), fill_ok=False, layouts=flat), a.array((size,), layouts=flat)
        bufs = ", ".join(a.array((size,), fill_ok=False, layouts=flat)
                         for _ in range({"sgd": 1, "adagrad": 1, "rmsprop": 3, "adam": 3}[step]))
        lr = a.value(["0.01"], SCALAR_BAD)
        call = {"sgd": f"C.sgd_step(p, {g}, {seg}, {bufs}, True, {lr}, 0.9)",
                "adagrad": f"C.adagrad_step(p, {g}, {seg}, {bufs}, {a.value(['1', '3'], ['0', '-1'])}, {lr})",
                "rmsprop": f"C.rmsprop_step(p, {g}, {seg}, {bufs}, {lr}, 0.99, 1e-8, 0.0, 0.9, True)",
                "adam": f"C.adam_step(p, {g}, {seg}, {bufs}, {a.value(['1', '5'], ['0', '-1'])}, {lr})"}[step]
        a.clean = False  # random optimizer states (e.g. negative exp_avg_sq) may legitimately give NaN
        a.valid = False
        lines.append(f"p = {p}; r = {call}; r = p")
        lines.append(_check(a))
    elif kernel == "augment":
        h, w = a.extent(), a.extent()
        ops = a.value(AUGMENT_OPS + [f"[('crop', {{'out_h': {h}, 'out_w': {w}, 'pad_left': 2, 'pad_top': 1}})]"],
                      AUGMENT_BAD_OPS)
        seed, step = a.value(["0", "7", "2**64 - 1"], ["-1", "2**64", "1.5"]), a.value(["0", "3"], ["-1", "2**64"])
        lines.append(f"r = F.augment_batch({a.array((n, c, h, w))}, {ops}, {seed}, {step})")
        lines.append(_check(a, "r", (n, c, h, w)))
    elif kernel == "clip":
        size = a.extent((1, 6))
        seg = a.value([f"np.array([[0, {size}, 1, 0]])"], [f"np.array([[0, {size + 9}, 1, 0]])", "np.array([[-1, 1, 1, 0]])",
                                                           "np.array([[0, 1, 1]])", "np.array([0, 1, 1, 0])"])
        fn = draw(st.sampled_from(["norm", "value", "max_norm"]))
        g = a.array((size,), layouts=["C"])
        norm_type = a.value(["2.0", "1.0", "float('inf')"], ["0.0", "-1.0", "float('nan')"])
        call = {"norm": f"C.clip_grad_norm_({g}, {seg}, {a.value(['1.0'], SCALAR_BAD)}, {norm_type}, False)",
                "value": f"C.clip_grad_value_({g}, {seg}, {a.value(['0.5'], SCALAR_BAD)})",
                "max_norm": f"C.max_norm_({g}, {seg}, {a.value(['0.5'], SCALAR_BAD)})"}[fn]
        lines.append(f"r = {call}")
    return a.code(lines)


# --- nn layers and the _C layer objects ------------------------------------------------------------

INT_GOOD = ["1", "2", "3", "5", "np.int64(3)"]
INT_BAD = ["-3", "2.7", "'x'", "None", "float('nan')", "2**63", "-2**63", "[3]", "1.0 + 2j"]
FLOAT_BAD = ["float('nan')", "float('inf')", "'x'", "None", "[0.1]"]
# name: [(argument, good values, invalid values)], and the input's trailing shape from the arguments
LAYERS = {
    "Linear": [("in_features", INT_GOOD, INT_BAD + ["0"]), ("out_features", INT_GOOD, INT_BAD + ["0"]),
               ("bias", ["True", "False"], [])],
    "BatchNorm1d": [("num_features", INT_GOOD, INT_BAD), ("eps", ["1e-5", "0.1"], FLOAT_BAD + ["-1.0"]),
                    ("momentum", ["0.1", "0.0", "1.0"], FLOAT_BAD + ["-0.5", "1.5"]),
                    ("affine", ["True", "False"], []), ("track_running_stats", ["True", "False"], [])],
    "BatchNorm2d": [("num_features", INT_GOOD, INT_BAD), ("eps", ["1e-5"], FLOAT_BAD + ["-1.0"]),
                    ("momentum", ["0.1"], FLOAT_BAD + ["-0.5", "1.5"])],
    "Dropout": [("p", ["0.0", "0.2", "0.5", "np.float32(0.5)"], FLOAT_BAD + ["1.0", "-0.1", "1.5"])],
    "PReLU": [("num_parameters", INT_GOOD, INT_BAD + ["0"]), ("init", ["0.25", "-1.0"], FLOAT_BAD)],
    "RReLU": [("lower", ["0.125", "0.0"], FLOAT_BAD + ["-0.5"]), ("upper", ["0.3333", "0.5"], FLOAT_BAD)],
    "LeakyReLU": [("negative_slope", ["0.01", "0.2", "-0.5"], FLOAT_BAD)],
    "ELU": [("alpha", ["1.0", "0.5"], FLOAT_BAD)],
    "Softmax": [("dim", ["-1", "1"], ["'x'", "None", "5", "1.5"])],
    "LogSoftmax": [("dim", ["-1", "1"], ["'x'", "None", "5", "1.5"])],
    "Maxout": [("pieces", ["1", "2", "3"], INT_BAD + ["0"])],
    "Flatten": [("start_dim", ["1", "-3"], ["'x'", "None", "1.5"]), ("end_dim", ["-1", "2"], ["'x'", "None", "1.5"])],
    "Identity": [], "Sigmoid": [], "Tanh": [], "ReLU": [], "SELU": [],
}


def _int(v, default=3):
    try:
        r = eval(v, {"np": __import__("numpy")})  # noqa: S307 - our own literals
        return int(r) if float(r).is_integer() and 0 < r < 100 else default
    except Exception:
        return default


@st.composite
def layers_case(draw):
    if draw(st.integers(0, 4)) == 0:
        return draw(cpp_layer_case())
    name = draw(st.sampled_from(sorted(LAYERS)))
    a = Args(draw, dtype=draw(st.sampled_from(["f4", "f4", "f8"])))
    values, bad = [], []
    for arg, good, invalid in LAYERS[name]:
        v, is_bad = a.bad_value(good, invalid)
        values.append(v)
        if is_bad:
            bad.append(f"{arg}={v}")
    dt = "np.float64" if a.dtype == "f8" else "np.float32"
    lines = [f"m = nn.{name}({', '.join(values + [f'dtype={dt}'])})"]
    if bad:
        lines.append(accept(name + ': ' + ', '.join(bad)))
        return a.code(lines)
    n = a.extent((1, 2, 3, 7, 16))
    first = _int(values[0]) if values else 4
    shape = {"Linear": (n, first), "BatchNorm1d": (n, first), "BatchNorm2d": (n, first, 2, 3), "PReLU": (n, first),
             "Maxout": (n, 2 * first), "Flatten": (n, 2, 3, 2)}.get(name, (n, 4))
    if name in ("BatchNorm1d", "BatchNorm2d") and n == 1:
        a.valid = False  # one value per channel: training refuses it
    if a._mutate():
        a.spoil()
        shape = shape[:1] + tuple(s + 1 for s in shape[1:]) if draw(st.booleans()) else shape[:1]
    lines.append(f"x = {a.array(shape)}")
    if draw(st.booleans()):
        lines.append("m.eval()")
    lines.append("y = m(x)")
    lines.append(f"ok_rows(y, {n})" + (f"; ok_finite(y)" if a.clean else "") if a.valid else "y")
    if draw(st.integers(0, 2)):
        lines.append(f"dx = m.backward({a.value(['np.ones_like(y)', 'A(y.shape, ' + repr(a.dtype) + ')'], ['x', 'y[:1]', 'y.T', 'np.ones((), y.dtype)', 'y.astype(np.float16)'])})")
        lines.append(f"ok_array(dx, x.shape, finite={a.clean})" if a.valid else "dx")
    return a.code(lines)


POINTWISE_KINDS = ["'ReLU'", "'ELU'", "'LeakyReLU'", "'SELU'"]
NAN = "float('nan')"
GELU = ["'GELU'", "'relu'"]


@st.composite
def cpp_layer_case(draw):
    """The _C layer handles themselves (fastnn.nn's building blocks), with or without bind_params."""
    a = Args(draw, dtype=draw(st.sampled_from(["f4", "f8"])))
    sfx = "float32" if a.dtype == "f4" else "float64"
    i, o, n = a.extent((1, 2, 5)), a.extent((1, 3)), a.extent((1, 2, 4))
    ctor = draw(st.sampled_from([
        f"C.Linear_{sfx}({i}, {o}, True, 'none', 0.01)", f"C.BatchNorm_{sfx}({i}, 1e-5, 0.1, True, True, 0)",
        f"C.PReLU_{sfx}({i})", f"C.Maxout_{sfx}({a.value(['1', '2'], ['0', '-1'])})",
        f"C.Pointwise_{sfx}({a.value(POINTWISE_KINDS, GELU)}, 1.0)",
        f"C.Dropout_{sfx}({a.value(['0.5'], ['1.0', '-1.0', NAN])})",
        f"C.RReLU_{sfx}(0.1, 0.3)", f"C.Softmax_{sfx}(False)", f"C.Flatten_{sfx}({a.value(['1'], ['0', '-5', '7'])}, -1)",
        f"C.Sequential_{sfx}([C.Linear_{sfx}({i}, {o}, True, 'none', 0.01), C.Identity_{sfx}()])",
        f"C.PythonLayer_{sfx}(Py())"]))
    lines = [f"l = {ctor}"]
    bind = draw(st.sampled_from(["exact", "exact", "none", "short", "offset", "hostile"]))
    if bind == "none":
        a.spoil()
    elif bind == "hostile":
        a.spoil()
        lines.append(f"l.bind_params({draw(hostile_array())}, {draw(hostile_array())}, {draw(st.sampled_from(['0', '-1', '2**62']))})")
    else:
        extra = {"exact": "0", "short": "-1", "offset": "0"}[bind]
        off = {"exact": "0", "short": "0", "offset": "3"}[bind]
        if bind != "exact":
            a.spoil()
        lines.append(f"k = max(l.num_params() + {extra}, 0); l.bind_params(np.zeros(k, np.{sfx}), np.zeros(k, np.{sfx}), {off})")
    if draw(st.booleans()):
        lines.append(f"s = l.output_shape({a.value([f'[{n}, {i}]'], ['[]', '[-1, 3]', '[2**62, 2**62]', '[0]'])})")
    x = a.array((n, i * 2 if "Maxout" in ctor else i), layouts=["C"])  # the nn modules pass C-contiguous copies
    lines.append(f"x = {x}; y = l.forward(x, {a.value(['True', 'False'])}, 0, 0)")
    if draw(st.booleans()):
        lines.append(f"dx = l.backward({a.value(['np.ones_like(y)'], ['x', 'y[:1].copy()', 'np.ones(y.shape[::-1], y.dtype)'])}, True)")
    if draw(st.booleans()):
        lines.append("st_ = [v.copy() for _, v in l.state()]")
    return a.code(lines)


# --- optimizers and learning-rate schedulers ---------------------------------------------------------

LR = (["1e-3", "0.1"], ["-1.0", "float('nan')", "float('inf')", "'x'", "None"])
NONNEG = (["0.0", "0.1"], ["-0.1", "float('nan')", "'x'"])
OPTIMIZERS = {
    "SGD": [("lr", LR), ("momentum", (["0.0", "0.9"], ["-0.5", "float('nan')"])), ("dampening", (["0.0"], ["float('nan')"])),
            ("weight_decay", NONNEG), ("nesterov", (["False"], []))],
    "Adam": [("lr", LR), ("betas", (["(0.9, 0.999)", "(0.0, 0.5)"], ["(1.0, 0.999)", "(-0.1, 0.9)", "(0.9,)", "(0.9, float('nan'))", "0.9"])),
             ("eps", (["1e-8"], ["-1e-8", "float('nan')"])), ("weight_decay", NONNEG), ("amsgrad", (["False", "True"], []))],
    "AdamW": [("lr", LR), ("betas", (["(0.9, 0.999)"], ["(1.5, 0.9)"])), ("weight_decay", NONNEG)],
    "RMSprop": [("lr", LR), ("alpha", (["0.99"], ["-0.1", "float('nan')"])), ("eps", (["1e-8"], ["-1.0"])),
                ("weight_decay", NONNEG), ("momentum", (["0.0", "0.9"], ["-1.0"])), ("centered", (["False", "True"], []))],
    "Adagrad": [("lr", LR), ("lr_decay", NONNEG), ("weight_decay", NONNEG),
                ("initial_accumulator_value", NONNEG), ("eps", (["1e-10"], ["-1.0", "float('nan')"]))],
}
SCHEDULERS = {
    "StepLR": [("step_size", (["1", "3"], ["0", "-1", "1.5", "'x'"])), ("gamma", (["0.1", "0.5"], ["-1.0", "float('nan')", "'x'"]))],
    "MultiStepLR": [("milestones", (["[1, 3]", "[2]"], ["'x'", "[1.5]"])), ("gamma", (["0.1"], ["-1.0", "float('nan')"]))],
    "ExponentialLR": [("gamma", (["0.9", "1.0"], ["-1.0", "float('nan')", "float('inf')", "'x'"]))],
    "LinearLR": [("start_factor", (["0.3333", "1.0"], ["0.0", "-1.0", "float('nan')", "1.5"])),
                 ("end_factor", (["1.0", "0.5"], ["-1.0", "float('nan')", "1.5"])), ("total_iters", (["5", "1"], ["0", "-1", "2.5"]))],
    "CosineAnnealingLR": [("T_max", (["5", "1"], ["0", "-1", "2.5", "'x'"])), ("eta_min", (["0.0", "1e-4"], ["-1.0", "float('nan')"]))],
    "CosineAnnealingWarmRestarts": [("T_0", (["3", "1"], ["0", "-1", "2.5"])), ("T_mult", (["1", "2"], ["0", "1.5", "-1"])),
                                    ("eta_min", (["0.0"], ["-1.0", "float('nan')"]))],
    "ReduceLROnPlateau": [("mode", (["'min'", "'max'"], ["'x'", "None"])), ("factor", (["0.1", "0.5"], ["1.0", "-0.5", "float('nan')"])),
                          ("patience", (["0", "2"], ["1.5"])), ("threshold", (["1e-4"], ["float('nan')"]))],
    "LambdaLR": [("lr_lambda", (["lambda e: 0.9 ** e"], ["lambda e: float('nan')", "lambda e: -1.0", "lambda e: 'x'", "3"]))],
}
STATE_EDITS = [  # (edit of sd = opt.state_dict() after one step, invalid beyond doubt)
    ("sd['state'][k] = -abs(sd['state'][k]) - 1", False),
    ("sd['state'][k] = sd['state'][k] * np.nan", True),
    ("sd['state'][k] = sd['state'][k][:-1]", True),
    ("sd['state'][k] = np.concatenate([sd['state'][k]] * 2)", True),
    ("sd['state'][k] = sd['state'][k].astype(np.complex128) * 1j", True),
    ("sd['state'][k] = 'x'", True),
    ("del sd['state'][k]", True),
    ("sd['state']['step'] = np.array([-1])", True),
    ("sd['state']['step'] = np.array([2.5])", True),
    ("sd['param_groups'][0]['lr'] = -1.0", True),
    ("sd['param_groups'][0]['lr'] = 'x'", True),
    ("sd['param_groups'] = []", True),
    ("sd['param_groups'][0]['params'] = [0, 0]", False),
    ("sd['param_groups'][0]['params'] = [7, 99]", True),
    ("sd['state'][k] = sd['state'][k].astype(np.float64)", False),
    ("k = 'exp_avg_sq'; sd['state'][k] = -abs(sd['state'][k]) - 1", True),  # Adam's: (its square root is taken)
]


def _hyper(a, table):
    values, bad = [], []
    for arg, (good, invalid) in table:
        v, is_bad = a.bad_value(good, invalid) if invalid else (a.draw(st.sampled_from(good)), False)
        values.append(f"{arg}={v}")
        if is_bad:
            bad.append(f"{arg}={v}")
    return ", ".join(values), bad


@st.composite
def optim_case(draw):
    a = Args(draw, dtype="f4")
    kind = draw(st.sampled_from(["mlp", "bn", "act", "lin"]))
    lines = [f"m = small_model({kind!r}); X, y = XY()"]
    what = draw(st.sampled_from(["optimizer", "optimizer", "state", "scheduler", "scheduler", "clip"]))
    name = draw(st.sampled_from(sorted(OPTIMIZERS)))
    edit, invalid = draw(st.sampled_from(STATE_EDITS))
    if "exp_avg_sq" in edit:
        name = draw(st.sampled_from(["Adam", "AdamW"]))
    if what == "optimizer":
        args, bad = _hyper(a, OPTIMIZERS[name])
        lines.append(f"opt = optim.{name}(m.parameters(), {args})")
        if bad:
            lines.append(accept(name + ': ' + ', '.join(bad)))
            return a.code(lines)
    else:
        lines.append(f"opt = optim.{name}(m.parameters(), lr=0.01)")
    lines.append("o = m(X); m.backward(np.ones_like(o) / len(X)); opt.step()")
    if what == "state":
        a.spoil()
        lines.append(f"sd = opt.state_dict(); ks = sorted(sd['state']); k = ks[{draw(st.integers(0, 5))} % len(ks)]; {edit}")
        lines.append("opt.load_state_dict(sd)")
        if invalid:
            lines.append(accept('load_state_dict after ' + edit))
            return a.code(lines)
        lines.append("opt.step()")
    elif what == "scheduler":
        sname = draw(st.sampled_from(sorted(SCHEDULERS)))
        args, bad = _hyper(a, SCHEDULERS[sname])
        lines.append(f"s = lr_scheduler.{sname}(opt, {args})")
        if bad:
            lines.append(accept(sname + ": " + ", ".join(bad)))
            return a.code(lines)
        metric = a.value(["1.0"], ["float('nan')", "'x'", "None"])
        lines.append(f"[(opt.step(), s.step({metric if sname == 'ReduceLROnPlateau' else ''})) for e in range(6)]")
        lines.append("ok_lr(opt)")
    elif what == "clip":
        fn = draw(st.sampled_from(["clip_grad_norm_", "clip_grad_value_", "max_norm_"]))
        v, is_bad = a.bad_value(["1.0", "0.5"], ["-1.0", "float('nan')", "'x'", "None"])
        extra = ""
        if fn == "clip_grad_norm_":
            t, tb = a.bad_value(["2.0", "1.0", "float('inf')"], ["0.0", "-1.0", "float('nan')", "'x'"])
            extra, is_bad = f", {t}", is_bad or tb
        lines.append(f"optim.{fn}(m.parameters(), {v}{extra})")
        if is_bad:
            lines.append(accept(fn + ' with ' + v + extra))
            return a.code(lines)
        lines.append("opt.step()")
    if a.clean:
        lines.append("ok_finite(m.flat_parameters())")
    return a.code(lines)


# --- fit / evaluate / predict / train_step ----------------------------------------------------------

# A Python module's forward / backward: "ok" (valid), "bad" (breaks the contract: an error is
# required), "rows" (bad when a batch has more than one row), "cols" (bad when the module's input
# has more than one column: not known here when the data or the output is 1 wide), "odd" (may raise or not).
PY_FORWARD = {
    "x.copy()": "ok", "np.asfortranarray(x)": "ok", "x * 2": "ok", "np.broadcast_to(x[:1], x.shape)": "ok",
    "x[::-1]": "ok", "x * np.nan": "odd", "x[:, :1].copy()": "odd", "x.reshape(-1)": "odd", "x.T.copy()": "odd",
    "x[:0].copy()": "bad", "np.zeros((), x.dtype)": "bad", "np.concatenate([x, x])": "bad", "x[:1].copy()": "rows",
    "x.astype(np.float64) if x.dtype == np.float32 else x.astype(np.float32)": "bad", "x.tolist()": "bad",
    "None": "bad", "x.astype(np.complex64)": "bad", "x.astype(np.int64)": "bad",
}
PY_BACKWARD = {
    "g": "ok", "g.copy()": "ok", "np.asfortranarray(g)": "ok", "g * np.nan": "odd",
    "np.zeros((g.shape[0] * 64, g.shape[1]), g.dtype)": "bad", "g[:1].copy()": "rows", "g[:0].copy()": "bad",
    "np.zeros((), g.dtype)": "bad", "g.reshape(-1)": "odd", "None": "bad",
    "g.astype(np.float64) if g.dtype == np.float32 else g.astype(np.float32)": "bad",
    "g[:, :1].copy()": "cols", "g.tolist()": "bad", "np.zeros((g.shape[0], g.shape[1] + 3), g.dtype)": "bad",
    "fail()": "odd",
}


@st.composite
def train_case(draw):
    a = Args(draw, dtype="f4")
    entry = draw(st.sampled_from(["fit", "fit", "evaluate", "predict", "predict", "train_step", "layer_statistics"]))
    kind = draw(st.sampled_from(["mlp", "bn", "act", "lin", "maxout", "rrelu", "flat", "nobatch"]))
    if kind == "nobatch":
        a.spoil()
    features, classes = draw(st.sampled_from([5, 1])), draw(st.sampled_from([3, 2, 1]))
    n = a.extent((1, 2, 7, 33, 64))
    py, broken, row_broken = "", [], []  # broken: the contract violations the entry must report
    if kind != "flat" and draw(st.integers(0, 1)) == 0:
        mode = draw(st.sampled_from(["forward", "backward", "both"]))
        fwd = draw(st.sampled_from(sorted(PY_FORWARD))) if mode != "backward" else "x.copy()"
        bwd = draw(st.sampled_from(sorted(PY_BACKWARD))) if mode != "forward" else "g"
        where = draw(st.integers(0, 3))
        for side, code, verdict in (("forward", fwd, PY_FORWARD[fwd]), ("backward", bwd, PY_BACKWARD[bwd])):
            if verdict != "ok":
                a.spoil()
            if verdict == "cols" and 1 in (features, classes):
                verdict = "odd"
            # layer_statistics runs every layer's backward, the first one's too
            if verdict in ("bad", "cols", "rows") and (side == "forward" or entry == "layer_statistics"
                                                       or (entry in ("fit", "train_step") and where > 0)):
                (row_broken if verdict == "rows" else broken).append(f"a Python module {side} returned {code}")
        py = f", py=Py(lambda x: {fwd}, lambda g: {bwd}), where={where}"
    dt = draw(st.sampled_from(["f4", "f4", "f8"]))
    lines = [f"m = small_model({kind!r}, {features}, {classes}{py}, dtype={dt!r})"]
    if kind == "bn" and entry in ("fit", "train_step", "layer_statistics"):
        a.valid = False  # a batch of one has no batch statistics, and fit may end on one
    xshape = (n, features) if kind != "flat" else (n, features, 1)
    if a._mutate():
        a.spoil()
        xshape = draw(st.sampled_from([(n,), (n, features + 1), (n, features, 2), ()]))
    x = a.array(xshape, dtype=draw(st.sampled_from(["f4", "f8", "f4"])), layouts=["F", "strided", "neg", "ro", "T"])
    if not a.clean:
        a.valid = False  # fit, evaluate and predict refuse NaN/inf in X
    loss = a.value(["'cross_entropy'", "nn.CrossEntropyLoss()"], ["'x'", "nn.MSELoss", "3"],
                   odd=["'mse'", "'bce_with_logits'", "nn.MSELoss(reduction='sum')"])
    if "mse" in loss or "bce" in loss:
        y = f"A(({n}, {classes}), 'f4')" if "bce" not in loss else f"(A(({n}, {classes})) > 0).astype(np.float32)"
    else:
        ykind, ybad = a.bad_value(["'ok'", "'ok'", "'i4'"], ["'neg'", "'big'", "'huge'", "'float'", "'2d'"])
        y = f"L({n}, {classes}, {ykind}, 1)"
    y_rows = a.bad_value([f"{n}"], [f"{n + 1}", f"{max(n - 1, 0)}"])[0]
    y = f"({y})[:{y_rows}]" if y_rows != f"{n}" else y
    lines.append(f"X = {x}; y = {y}")
    batch = a.value(["1", "3", "32", "np.int64(4)", "10**6"], ["0", "-1", "2.5", "2**63", "'8'", "True"])
    if n > 1 and (batch != "1" or entry in ("train_step", "layer_statistics")):  # x[:1] of one row is the batch
        broken += row_broken
    if entry == "fit":
        epochs = a.value(["1", "2"], ["-1", "1.5", "2**64"], odd=["0"])  # 2**63 epochs of one batch: legal, endless
        if epochs == "0":  # no batch: backward never runs
            broken = [b for b in broken if "backward" not in b]
        opts = [f"batch_size={batch}", f"epochs={epochs}", "verbose=0"]
        opts.append("seed=" + a.value(["0", "1", "None", "2**63"], ["-1", "2**64", "1.5", "float('nan')"]))
        opts.append("shuffle=" + a.value(["True", "False"], ["'no'", "2", "None"]))
        if draw(st.booleans()):
            opts.append("clip_grad_norm=" + a.value(["1.0", "None"], ["-1.0", "float('nan')"]))
        if draw(st.booleans()):
            opts.append("clip_grad_value=" + a.value(["0.5", "None"], ["-1.0", "0.0", "float('nan')"]))
        if draw(st.booleans()):
            opts.append("validation_data=" + a.value(["(X[:5], y[:5])", "(X, y)"],
                                                     ["(X,)", "X", "(X[:, :1], y)", "(X, y[:1])", "(X[:0], y[:0])"]))
        elif draw(st.integers(0, 2)) == 0:
            opts.append("validation_split=" + a.value(["0.2", "0.5"], ["1.0", "-0.1", "1.5", "float('nan')"]))
            if n < 10:
                a.valid = False  # leaves no training or no validation samples
        opts.append("optimizer=" + a.value(["'adam'", "'sgd'"], ["'x'", "3"]))
        lines.append(f"h = fastnn.fit(m, X, y, loss={loss}, {', '.join(opts)})")
        lines.append("ok_finite(h['loss'])" if a.clean else "h")
        lines.append(f"r = m(np.array(X[:1], m.dtype)) if {n} else 0")
    elif entry == "evaluate":
        lines.append(f"r = fastnn.evaluate(m, X, y, loss={loss}, batch_size={batch})")
        lines.append("ok_finite(r)" if a.clean else "r")
    elif entry == "layer_statistics":
        opts = [f"bins={a.value(['1', '7', '50'], ['0', '-1', '2.5', 'None'])}",
                f"samples={a.value(['0', '5', '2000'], ['-1', '1.5', 'None'])}",
                f"training={a.value(['True', 'False'], ['1', 'None', chr(39) + 'yes' + chr(39)])}",
                f"seed={a.value(['0', '2**63'], ['-1', '2**64', '1.5'])}"]
        lines.append(f"r = fastnn.train.layer_statistics(m, X, y, loss={loss}, {', '.join(opts)})")
        lines.append("ok_finite(r)" if a.clean else "r")
    elif entry == "predict":
        lines.append(f"r = fastnn.predict(m, X, batch_size={batch})")
        lines.append("ok_rows(r, len(X)); ok_finite(r)" if a.clean else "ok_rows(r, len(X))")
    else:
        opt = draw(st.sampled_from(["optim.Adam(m.parameters())", "optim.SGD(m.parameters(), lr=0.1)", "'adam'", "None"]))
        if "optim." not in opt:
            a.spoil()
        seed = a.value(["0", "5"], ["-1", "2**64", "1.5"])
        lines.append(f"r = fastnn.train_step(m, X, y, {loss}, {opt}, seed={seed}, step={a.value(['0', '3'], ['-1', '2**64'])})")
        lines.append("ok_finite(r)" if a.clean else "r")
    if broken:
        lines.append(accept('; '.join(broken)))
    return a.code(lines)


# --- save / load ---------------------------------------------------------------------------------

META = "{'format': 'fastnn-model', 'version': 1, 'dtype': 'float32', 'architecture': %s}"
LOAD_RSS_MIB = 256
_SEQ = "{'class': 'Sequential', 'children': [['0', %s]]}"
_LINEAR = "{'class': 'Linear', 'config': %s}"
ARCHS = [  # (architecture JSON, valid: False, or None for a model without layers, which may load)
    (_SEQ % (_LINEAR % "{'in_features': 100000, 'out_features': 100000}"), False),
    (_SEQ % (_LINEAR % "{'in_features': 2**40, 'out_features': 2**40}"), False),
    (_SEQ % (_LINEAR % "{'in_features': -5, 'out_features': 3}"), False),
    (_SEQ % "{'class': 'BatchNorm1d', 'config': {'num_features': 10**9}}", False),
    (_SEQ % "{'class': 'PReLU', 'config': {'num_parameters': 2.5}}", False),
    (_SEQ % (_LINEAR % "{'in_features': '3', 'out_features': 3}"), False),
    (_SEQ % (_LINEAR % "{'in_features': 3, 'out_features': 2, 'init': 'ones'}"), False),
    (_SEQ % "{'class': 'Module'}", False),
    (_SEQ % (_LINEAR % "[3, 2]"), False),
    ("{'class': 'Sequential', 'children': 'x'}", False),
    ("{'class': 'Sequential', 'children': [[0]]}", False),
    (_SEQ % (_SEQ % "{'class': 'Sequential', 'children': []}"), None),
    (_SEQ % (_LINEAR % "{'in_features': 3, 'out_features': 2}"), False),  # no weights in the file
    ("[]", False),
    ("None", False),
]
NPYS = [  # member contents for model/0.weight (a (2, 3) float32 in the valid architecture)
    "bomb_npy((2, 3), '<f4')", "bomb_npy((20000, 10000))", "bomb_npy((2, 3), '<f4', declared=(2**40, 2**40))",
    "bomb_npy((6,), '<f4')", "bomb_npy((2, 3), '<f8')", "bomb_npy((2, 3), '|O')", "bomb_npy((2, 3), '<c8')",
    "bomb_npy((2, 3), '<f4')[:40]", "b'\\x93NUMPY garbage'", "b''",
]


@st.composite
def io_case(draw):
    a = Args(draw, dtype="f4")
    kind = draw(st.sampled_from(["roundtrip", "truncate", "flip", "flip", "crafted", "crafted", "crafted", "npy"] * 2
                                + ["bomb"]))  # rare: each reads 512 MiB
    opt, with_opt = draw(st.booleans()), draw(st.booleans())
    # Loading a small file must not take much memory, whatever it declares.
    load = f"within_rss({LOAD_RSS_MIB}, fastnn.load, p, with_optimizer={with_opt})"
    must_fail = kind in ("truncate", "crafted")  # a flipped byte may hit a field nobody reads
    model = draw(st.sampled_from(["mlp", "bn", "act", "maxout", "lin"]))
    if kind == "bomb":  # a member that inflates to 512 MiB, declared honestly
        a.spoil()  # invalid: refusing it is right
        return a.code([f"p = bomb_file(2**29); r = {load}", accept("a 512 MiB weight for Linear(5, 3) loaded")])
    if kind == "roundtrip":
        lines = [f"m = small_model({model!r}); X, y = XY(); p = write_bytes(saved_model({model!r}, {opt}))",
                 f"r = {load}", "r = r[0] if isinstance(r, tuple) else r; ok_rows(fastnn.predict(r, X), len(X))"]
        return a.code(lines)
    a.spoil()
    if kind == "truncate":
        lines = [f"b = saved_model({model!r}, {opt}); p = write_bytes(b[:{draw(st.integers(0, 4000))} % len(b)])"]
    elif kind == "flip":
        flips = draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4))
        lines = [f"b = bytearray(saved_model({model!r}, {opt}))"]
        lines += [f"b[{i} % len(b)] ^= {x}" for i, x in flips]
        lines.append("p = write_bytes(bytes(b))")
    elif kind == "crafted":
        arch, valid = draw(st.sampled_from(ARCHS))
        meta = META % arch
        if draw(st.integers(0, 3)) == 0:
            meta = draw(st.sampled_from(["[]", "'not json'", meta.replace("'version': 1", "'version': 2**70"),
                                         meta.replace("float32", "float16")]))
        members = {"'fastnn.json'": meta}
        if draw(st.integers(0, 2)) == 0:
            members["'model/0.weight.npy'"] = draw(st.sampled_from(NPYS))
        if draw(st.integers(0, 5)) == 0:
            members[draw(st.sampled_from(["'../evil.npy'", "'model/0.bias.txt'", "'/abs.npy'"]))] = "b'x'"
        lines = ["p = zip_with({" + ", ".join(f"{k}: {v}" for k, v in members.items()) + "})"]
        must_fail = valid is False or meta != META % arch or len(members) > 1
    else:  # a valid model file with one member replaced
        member = draw(st.sampled_from(["model/0.weight", "model/0.bias", "optimizer/exp_avg", "optimizer/step"]))
        lines = [f"import zipfile, io; src = zipfile.ZipFile(io.BytesIO(saved_model('lin', True)))",
                 "d = {n: src.read(n) for n in src.namelist()}",
                 f"d[{member + '.npy'!r}] = {draw(st.sampled_from(NPYS))}", "p = zip_with(d)"]
        must_fail = member.startswith("model/") or with_opt  # every NPYS entry mismatches the model
    lines.append(f"r = {load}")
    if must_fail:
        lines.append(f"accepted('a damaged model file ({kind}) loaded')")
    return a.code(lines)


# --- the command line ---------------------------------------------------------------------------

CLI_OPTIONS = {  # option: (valid values, invalid values)
    "--model": (["linear", "mlp-s"], ["bad", ""]),
    "--epochs": (["1"], ["-1", "x", "1.5"]),
    "--batch-size": (["256", "5000", "100000"], ["0", "-1", "x", "2.5"]),
    "--optimizer": (["adam", "sgd", "adagrad", "rmsprop", "adamw"], ["bad"]),
    "--lr": (["0.01"], ["nan", "-1", "inf", "x", "1e400"]),
    "--data": (["bundled"], ["/nonexistent", "/etc", "/dev/null", ""]),
    "--threads": (["1", "2"], ["-1", "x", "100000"]),
    "--seed": (["0", "3"], ["-1", "x", "18446744073709551616"]),
    "--save": (["SAVE"], ["/nonexistent/dir/m.fnn", "/", "/proc/m.fnn"]),
}


@st.composite
def cli_case(draw):
    a = Args(draw, dtype="f4")
    if draw(st.integers(0, 9)) == 0:
        size = a.value(["16", "64"], ["0", "-5", "x"])
        argv = ["info", "--size", size]
        threads = a.value([None], ["0", "-1"])
        if threads:
            argv += ["--threads", threads]
        return a.code([f"from fastnn.__main__ import main; r = main({argv!r})"])
    argv, bad = ["train", "--quiet", "--epochs", "1", "--data", "bundled"], []
    for opt in draw(st.lists(st.sampled_from(sorted(CLI_OPTIONS)), unique=True, max_size=4)):
        good, invalid = CLI_OPTIONS[opt]
        v, is_bad = a.bad_value(good, invalid)
        argv += [opt, v]
        if is_bad and opt not in ("--threads",):
            bad.append(f"{opt} {v}")
    if draw(st.integers(0, 9)) == 0:
        argv.append(draw(st.sampled_from(["--unknown", "extra", "--epochs"])))
        a.spoil()
    lines = ["from fastnn.__main__ import main",
             f"r = main([v.replace('SAVE', tmp_path('cli.fnn')) for v in {argv!r}])"]
    if bad:
        lines.append(accept('python -m fastnn ' + ' '.join(bad)))
    return a.code(lines)


FAMILIES = {"functional": functional_case, "layers": layers_case, "optim": optim_case, "train": train_case,
            "io": io_case, "cli": cli_case}
