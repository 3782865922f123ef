"""batchnorm_rop: wrappers of the C++ kernels of BatchNorm's R-operator (kernels/batchnorm_rop.h;
reference/batchnorm_rop.py is the specification)."""

from .._config import _C


def batch_norm_rop_forward(x, rx, mean, invstd, gamma=None, vgamma=None, vbeta=None, training=True):
    """R{y} of y = gamma (x - mean) invstd + beta along the direction (rx, vgamma, vbeta).

    Args:
        x: (N, C, ...) float32/float64, normalized per channel (dimension 1).
        rx: R{x} of x's shape, or None (0).
        mean, invstd: (C,) the statistics forward used (the batch's in training, the running ones in eval).
        gamma, vgamma, vbeta: (C,) or None (affine=False: gamma 1, no direction).
        training: whether mean/invstd are the batch's own (their dependence on x is differentiated).
    Returns:
        (ry, r_mean, r_cov): R{y} of x's shape, and the per-channel mean(rx), mean(xh rx) that
        batch_norm_rop_backward needs (0 in eval).
    """
    return _C.batch_norm_rop_forward(x, rx, mean, invstd, gamma, vgamma, vbeta, training)


def batch_norm_rop_backward(g, rg, x, rx, mean, invstd, gamma, vgamma, r_mean, r_cov, training=True):
    """(dx, R{dx}, dgamma, dbeta, R{dgamma}, R{dbeta}) given g = dL/dy and rg = R{dL/dy}
    (the four parameter results are None when gamma is)."""
    return _C.batch_norm_rop_backward(g, rg, x, rx, mean, invstd, gamma, vgamma, r_mean, r_cov, training)
