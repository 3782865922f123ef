"""Batch normalization (Ioffe & Szegedy 2015; seed 001 "code 1" and eq. 5.18).

x is (N, C) (BatchNorm1d: one channel per feature) or (N, C, L) / (N, C, H, W) (BatchNorm2d: the
N*H*W values of a channel are normalized together). Every formula is per channel c over its
n = N*H*W values; ``_per_channel`` views x as (N, C, S) and broadcasts (C,) vectors over it.
"""

import numpy as np

__all__ = ["batch_norm_affine", "batch_norm_backward", "batch_norm_fold", "batch_norm_fold_into", "batch_norm_forward"]


def _per_channel(x):
    """x as (N, C, S) with S = product of the spatial extents (1 for (N, C))."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _c(v):
    """A (C,) vector broadcast against (N, C, S)."""
    return v[None, :, None]


def _gamma_beta(weight, bias, x):
    C = x.shape[1]
    gamma = np.ones(C, dtype=x.dtype) if weight is None else weight
    beta = np.zeros(C, dtype=x.dtype) if bias is None else bias
    return gamma, beta


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Training: mu_B, sigma_B^2 (biased) per channel, y = gamma (x - mu_B) / sqrt(sigma_B^2 + eps) + beta,
    running stats updated in place (unbiased variance). Eval: the folded affine y = scale x + shift.
    Returns (y, save_mean, save_invstd)."""
    z = _per_channel(x)
    gamma, beta = _gamma_beta(weight, bias, x)
    n = z.shape[0] * z.shape[2]
    if training:
        if n <= 1:
            raise ValueError(
                f"[batch_norm_forward] Expected more than 1 value per channel when training, got input of shape {x.shape}"
            )
        mu = z.mean(axis=(0, 2))
        var = ((z - _c(mu)) ** 2).mean(axis=(0, 2))  # two-pass: deviations from the mean, never E[x^2] - mu^2
        invstd = 1 / np.sqrt(var + eps)
        y = _c(gamma) * (z - _c(mu)) * _c(invstd) + _c(beta)
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mu
            running_var[...] = (1 - momentum) * running_var + momentum * var * (n / (n - 1))
        return y.reshape(x.shape), mu, invstd
    if running_mean is None or running_var is None:
        raise ValueError("[batch_norm_forward] training=False needs running_mean and running_var, got None")
    scale, shift = batch_norm_fold(weight, bias, running_mean, running_var, eps)
    return batch_norm_affine(x, scale, shift), running_mean.copy(), 1 / np.sqrt(running_var + eps)


def batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, training=True):
    """x_hat = (x - mean) invstd; dbeta = sum g; dgamma = sum g x_hat;
    training: dx = gamma invstd / n (n g - dbeta - x_hat dgamma); eval: dx = g gamma invstd.
    Returns (grad_input, grad_weight, grad_bias)."""
    g, z = _per_channel(grad_out), _per_channel(x)
    gamma, _ = _gamma_beta(weight, None, x)
    n = z.shape[0] * z.shape[2]
    x_hat = (z - _c(save_mean)) * _c(save_invstd)
    dbeta = g.sum(axis=(0, 2))
    dgamma = (g * x_hat).sum(axis=(0, 2))
    if training:
        dx = _c(gamma * save_invstd / n) * (n * g - _c(dbeta) - x_hat * _c(dgamma))
    else:
        dx = g * _c(gamma * save_invstd)
    return dx.reshape(x.shape), dgamma, dbeta


def batch_norm_fold(weight, bias, running_mean, running_var, eps=1e-5):
    """Eq. 5.18: scale = gamma / sqrt(var + eps), shift = beta - gamma mu / sqrt(var + eps)."""
    gamma, beta = _gamma_beta(weight, bias, running_mean[None, :])
    scale = gamma / np.sqrt(running_var + eps)
    shift = beta - running_mean * scale
    return scale, shift


def batch_norm_fold_into(prev_weight, prev_bias, weight, bias, running_mean, running_var, eps=1e-5):
    """An eval-mode BN folded into the layer before it: W'[o] = scale[o] W[o], b' = scale b + shift
    (b = 0 without a bias), scale and shift from batch_norm_fold. prev_weight is any layer's (out, ...)
    weight whose output channel o is axis 0: Linear (out, in), Conv2d (out, in/groups, kh, kw).
    Returns (weight, bias)."""
    if prev_weight.shape[0] != running_mean.shape[0]:
        raise ValueError(f"[batch_norm_fold_into] the layer has {prev_weight.shape[0]} output channels, "
                         f"the batch norm {running_mean.shape[0]}")
    scale, shift = batch_norm_fold(weight, bias, running_mean, running_var, eps)
    folded = prev_weight * scale.reshape((-1,) + (1,) * (prev_weight.ndim - 1))
    return folded, shift if prev_bias is None else prev_bias * scale + shift


def batch_norm_affine(x, scale, shift):
    """y = scale[c] x + shift[c] for every value of channel c."""
    return (_c(scale) * _per_channel(x) + _c(shift)).reshape(x.shape)
