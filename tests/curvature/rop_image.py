"""The image layers' R-operator checks (layers/layer.h), through the layer-level bindings:
rop_pass runs forward, rop_forward and rop_backward once; check_rop_fd compares it, in float64,
with central differences of forward and backward along (θ + t v, x + t rx, g + t rg); and
check_rop_float32 compares a float32 pass with the float64 one within sum-scaled bounds."""

import numpy as np

from tests.conftest import sum_bound

EPS = 1e-6
F64 = np.float64


def rop_pass(module, x, rx, v, g, rg, training=True, seed=3):
    """One R-operator pass of module's C++ layer at its parameters: {y, ry, dx, rdx, grad, hv}
    (rx None: R{x} = 0; v, grad, hv over the module's flat parameter buffer)."""
    layer, buf = module._layer, module.flatten_parameters_()
    n = layer.num_params()
    hv = np.zeros(n, module.dtype)
    if n:
        layer.bind_direction(np.ascontiguousarray(v, module.dtype), hv, 0)
        buf.grads[...] = 0
    y = layer.forward(x, training, seed, 0, True)
    ry = layer.rop_forward(rx, training, seed, 0, True)
    dx, rdx = layer.rop_backward(g, rg, True)
    grad = buf.grads.copy() if n else np.zeros(0, module.dtype)
    return dict(y=y, ry=ry, dx=dx, rdx=rdx, grad=grad, hv=hv)


def _fd(f, theta, buf, v, t_values=(EPS, -EPS)):
    out = []
    for t in t_values:
        if buf is not None:
            buf.params[...] = theta + t * v
        out.append(f(t))
    if buf is not None:
        buf.params[...] = theta
    return [(a - b) / (2 * EPS) for a, b in zip(out[0], out[1])]


def _close(actual, fd, what, rtol=1e-6, atol=1e-7):
    np.testing.assert_allclose(actual, fd, rtol=rtol, atol=atol * (1 + np.abs(fd).max(initial=0)), err_msg=what)


def check_rop_fd(module, x, rx_zero=False, training=True, seed=3, rtol=1e-6, atol=1e-7):
    """rop_forward = d/dt forward(x + t rx) at θ + t v, and rop_backward's R{dx}, R{dθ} = d/dt of
    backward's dx, dθ there with the upstream gradient g + t rg; dx and dθ are backward's (float64)."""
    rng = np.random.default_rng(1)
    layer, buf = module._layer, module.flatten_parameters_()
    n = layer.num_params()
    theta = buf.params.copy() if n else None
    v = rng.standard_normal(n)
    rx = np.zeros_like(x) if rx_zero else rng.standard_normal(x.shape)
    v_moved = v if layer.params_trainable else np.zeros(n)  # a frozen layer's parameters are constants
    y = layer.forward(x, training, seed, 0, True)
    g, rg = rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    r = rop_pass(module, x, None if rx_zero else rx, v, g, rg, training, seed)

    def forward_backward(t):
        if n:
            buf.grads[...] = 0
        yt = layer.forward(np.ascontiguousarray(x + t * rx), training, seed, 0, True)
        dxt = layer.backward(g + t * rg, True)
        return yt, dxt, (buf.grads.copy() if n else np.zeros(0))

    fd_y, fd_dx, fd_grad = _fd(forward_backward, theta, buf if n else None, v_moved)
    _close(r["ry"], fd_y, "R{y}", rtol, atol)
    _close(r["rdx"], fd_dx, "R{dx}", rtol, atol)
    if n:
        _close(r["hv"], fd_grad, "R{dθ}", rtol, atol)
    base = forward_backward(0.0)  # plain backward at θ: dx, dθ must be exactly its own
    np.testing.assert_array_equal(r["dx"], base[1], err_msg="rop_backward's dx")
    np.testing.assert_array_equal(r["grad"], base[2], err_msg="rop_backward's dθ")
    return r


def check_rop_float32(make, x, k, training=True, seed=3):
    """make(dtype) builds the module (same parameters for either dtype). The float32 pass matches
    the float64 one within sum_bound of the terms: the float64 pass on absolute values (every
    output of a multilinear R-op is a sum of products; layers whose state depends on the values,
    as a max pool's argmax, need k for their own few terms)."""
    rng = np.random.default_rng(2)
    m64, m32 = make(F64), make(np.float32)
    n = m64._layer.num_params()
    theta = rng.uniform(-1, 1, n)
    if n:
        m64.flatten_parameters_().params[...] = theta
        m32.flatten_parameters_().params[...] = theta.astype(np.float32)
    x32 = x.astype(np.float32)
    x64 = x32.astype(F64)
    rx = rng.uniform(-1, 1, x.shape).astype(np.float32)
    y = m64._layer.forward(x64, training, seed, 0, True)
    g, rg = (rng.uniform(-1, 1, y.shape).astype(np.float32) for _ in range(2))
    v = rng.uniform(-1, 1, n).astype(np.float32)
    r32 = rop_pass(m32, x32, rx, v, g, rg, training, seed)
    r64 = rop_pass(m64, x64, rx.astype(F64), v.astype(F64), g.astype(F64), rg.astype(F64), training, seed)
    if n:
        m64.flatten_parameters_().params[...] = np.abs(theta.astype(np.float32)).astype(F64)
    a = lambda z: np.abs(z).astype(F64)
    terms = rop_pass(m64, a(x32), a(rx), a(v), a(g), a(rg), training, seed)
    for key in ("y", "ry", "dx", "rdx", "grad", "hv"):
        err = np.abs(r32[key].astype(F64) - r64[key])
        bound = sum_bound(terms[key], k, np.float32)
        assert r32[key].dtype == np.float32 and (err <= bound).all(), (
            f"{key}: worst |f32 - f64| {err.max():.3g} > bound {bound.flat[np.argmax(err - bound)]:.3g}")
