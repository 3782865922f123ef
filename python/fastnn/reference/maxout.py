"""Maxout over groups of adjacent features and its derivative (kernels/maxout.h)."""

import numpy as np

__all__ = ["maxout_forward", "maxout_backward"]


def maxout_forward(x, pieces):
    """y[n, c] = max_p x[n, c * pieces + p];  argmax = the first p reaching it (int64)."""
    groups = x.reshape(x.shape[0], -1, pieces)
    argmax = groups.argmax(axis=-1).astype(np.int64)
    y = np.take_along_axis(groups, argmax[..., None], axis=-1)[..., 0]
    return y, argmax


def maxout_backward(grad_out, argmax, pieces):
    """The gradient of each group goes to its argmax; the other pieces get 0."""
    n, c = grad_out.shape
    grad_in = np.zeros((n, c, pieces), dtype=grad_out.dtype)
    np.put_along_axis(grad_in, argmax[..., None], grad_out[..., None], axis=-1)
    return grad_in.reshape(n, c * pieces)
