"""Batch normalization followed by ReLU and inverted dropout, as one op (kernels/batchnorm_activation.h).

It is the composition of the separate references, which is what the fused kernel must equal:
    z = batch_norm(x),  y = dropout(relu(z))   (dropout only in training)
and its gradient, batch_norm_backward of g_z = [z > 0] * keep / (1 - p) * g.
The mask that carries the ReLU and dropout decisions to the backward is one uint8 per element:
bit 0 (RELU_PASS) where z > 0, bit 1 (KEPT) where dropout kept the element (always without dropout).
"""

import numpy as np

from .activations import relu_forward
from .batchnorm import batch_norm_backward, batch_norm_forward
from .dropout import dropout_backward, dropout_forward
from .pool import max_pool2d_forward

__all__ = ["batch_norm_relu_backward", "batch_norm_relu_forward", "batch_norm_relu_max_pool2d_forward"]

RELU_PASS = 1
KEPT = 2


def batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5, p=0.0,
                            seed=0, step=0):
    """z = batch_norm_forward(x, ...); y = relu(z) * keep / (1 - p) with dropout_forward's keep mask
    for (seed, step) when training (no dropout in eval). Returns (y, save_mean, save_invstd, mask)."""
    z, save_mean, save_invstd = batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps)
    y, keep = dropout_forward(relu_forward(z), p, seed, step, training)
    mask = np.where(z > 0, RELU_PASS, 0).astype(np.uint8) | np.where(keep, KEPT, 0).astype(np.uint8)
    return y, save_mean, save_invstd, mask


def batch_norm_relu_backward(grad_out, x, weight, save_mean, save_invstd, mask, training=True, p=0.0):
    """g_z = [z > 0] * dropout_backward(grad_out, keep, p) (p = 0 in eval: no dropout), then
    batch_norm_backward(g_z, ...). Returns (grad_input, grad_weight, grad_bias)."""
    keep = (mask & KEPT) != 0
    g_r = dropout_backward(grad_out, keep, p if training else 0.0)
    g_z = np.where((mask & RELU_PASS) != 0, g_r, 0).astype(grad_out.dtype)
    return batch_norm_backward(g_z, x, weight, save_mean, save_invstd, training)


def batch_norm_relu_max_pool2d_forward(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
    """Training batch norm, ReLU, MaxPool2d(2): batch_norm_relu_forward(training=True, p=0), then
    max_pool2d_forward(., 2). x (N, C, H, W), H >= 2, W even and <= 1024. Returns
    (y, indices, save_mean, save_invstd)."""
    op = "batch_norm_relu_max_pool2d_forward"
    if np.ndim(x) != 4:
        raise ValueError(f"[{op}] x must be (N, C, H, W), got {np.shape(x)}")
    if x.shape[2] < 2 or x.shape[3] % 2 or x.shape[3] > 1024:
        raise ValueError(f"[{op}] needs H >= 2 and an even W <= 1024 (2x2 windows tiling the rows), got x {x.shape}")
    z, save_mean, save_invstd, _ = batch_norm_relu_forward(x, weight, bias, running_mean, running_var, True, momentum,
                                                           eps)
    y, indices = max_pool2d_forward(z, 2)
    return y, indices, save_mean, save_invstd
