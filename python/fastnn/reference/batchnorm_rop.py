"""The R-operator of batch normalization (kernels/batchnorm_rop.h) in NumPy (float64), on (N, C, ...)
arrays normalized per channel (dimension 1) with the given mean and invstd (the batch's in
training, the running ones in eval): R{y} and, given g = dL/dy and rg = R{g},
(dx, R{dx}, dgamma, dbeta, R{dgamma}, R{dbeta})."""

import numpy as np

__all__ = ["batch_norm_rop_backward", "batch_norm_rop_forward"]


def _ncs(a):
    a = np.asarray(a, np.float64)
    return a.reshape(a.shape[0], a.shape[1], -1)


def _c(a, C, default):
    return np.full((1, C, 1), float(default)) if a is None else np.asarray(a, np.float64).reshape(1, C, 1)


def _mean(a):
    return a.mean(axis=(0, 2), keepdims=True)


def _r_xhat(xh, rx, s, training):
    if not training:
        return s * rx
    return s * (rx - _mean(rx) - xh * _mean(xh * rx))


def batch_norm_rop_forward(x, rx, mean, invstd, gamma=None, vgamma=None, vbeta=None, training=True):
    """R{y} = gamma R{xh} + vgamma xh + vbeta; R{xh} = s (rx - mean(rx) - xh mean(xh rx)) in training, s rx in eval."""
    shape = np.shape(x)
    x = _ncs(x)
    C = x.shape[1]
    rx = np.zeros_like(x) if rx is None else _ncs(rx)
    m, s = _c(mean, C, 0), _c(invstd, C, 1)
    xh = (x - m) * s
    ry = _c(gamma, C, 1) * _r_xhat(xh, rx, s, training) + _c(vgamma, C, 0) * xh + _c(vbeta, C, 0)
    if training:
        r_mean, r_cov = _mean(rx).reshape(-1), _mean(xh * rx).reshape(-1)
    else:
        r_mean = r_cov = np.zeros(C)
    return ry.reshape(shape), r_mean, r_cov


def batch_norm_rop_backward(g, rg, x, rx, mean, invstd, gamma, vgamma, r_mean, r_cov, training=True):
    """(dx, R{dx}, dgamma, dbeta, R{dgamma}, R{dbeta}); r_mean, r_cov as the forward returned them
    (recomputed here from x and rx). The parameter results are None when gamma is."""
    shape = np.shape(x)
    g, rg, x = _ncs(g), _ncs(rg), _ncs(x)
    C = x.shape[1]
    rx = np.zeros_like(x) if rx is None else _ncs(rx)
    m, s = _c(mean, C, 0), _c(invstd, C, 1)
    xh = (x - m) * s
    rxh = _r_xhat(xh, rx, s, training)
    gm, vg = _c(gamma, C, 1), _c(vgamma, C, 0)
    gh, rgh = gm * g, vg * g + gm * rg
    if training:
        dx = s * (gh - _mean(gh) - xh * _mean(gh * xh))
        rdx = -s * _mean(xh * rx) * dx + s * (rgh - _mean(rgh) - rxh * _mean(gh * xh) - xh * _mean(rgh * xh + gh * rxh))
    else:
        dx, rdx = s * gh, s * rgh
    tot = lambda a: a.sum(axis=(0, 2))
    if gamma is None:
        return dx.reshape(shape), rdx.reshape(shape), None, None, None, None
    return dx.reshape(shape), rdx.reshape(shape), tot(g * xh), tot(g), tot(rg * xh + g * rxh), tot(rg)
