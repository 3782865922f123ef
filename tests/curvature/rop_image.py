"""The image layers' R-operator checks (layers/layer.h), through the layer-level bindings, beside
test_layer_rop.check_rop (central differences in float64): rop_pass runs forward, rop_forward and
rop_backward once; check_rop_float32 compares a float32 pass with the float64 one within
sum-scaled bounds."""

import numpy as np

from tests.conftest import sum_bound

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
