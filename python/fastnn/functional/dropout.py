"""dropout: wrappers of the C++ kernels (reference/dropout.py is the specification)."""

from .._config import _C


def dropout_forward(x, p=0.5, seed=0, step=0, training=True):
    """Inverted dropout: zero each element with probability p, scale the kept ones by 1 / (1 - p).

    ``y = x * mask / (1 - p)``, so E[y] = x and evaluation needs no rescaling. Element i (flat
    C-order index) is kept iff ``rng.keep(rng.bits(rng.stream_key(seed, step), i), keep_threshold(p))``:
    the mask depends only on (seed, step, i), never on the thread count. Pass a new ``step``
    for every training step. ``training=False`` or ``p == 0`` return a copy of x and an all-True mask.

    Args:
        x: any shape, float32/float64.
        p: drop probability in [0, 1).
        seed: integer in [0, 2**64).
        step: integer in [0, 2**64), e.g. the training step.
        training: False for evaluation (identity).
    Returns:
        (y, mask): y shaped like x (same dtype), mask a bool array shaped like x (True = kept).
    """
    return _C.dropout_forward(x, p, seed, step, training)


def dropout_backward(grad_out, mask, p):
    """Gradient of dropout: ``grad_in = grad_out * mask / (1 - p)``.

    The forward in eval mode is the identity, whose gradient is grad_out itself (pass p = 0).

    Args:
        grad_out: any shape, float32/float64.
        mask: bool array of grad_out's shape, from :func:`dropout_forward`.
        p: the drop probability used in the forward, in [0, 1).
    Returns:
        grad_in: shape and dtype of grad_out.
    """
    return _C.dropout_backward(grad_out, mask, p)
