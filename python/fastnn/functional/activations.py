"""activations: wrappers of the C++ kernels (reference/activations.py is the specification)."""

from .._config import _C


def sigmoid_forward(x):
    """Logistic sigmoid ``y = 1 / (1 + exp(-x))``.

    Args:
        x: any shape, float32/float64.
    Returns:
        y, same shape and dtype.
    """
    return _C.sigmoid_forward(x)


def sigmoid_backward(grad_out, y):
    """Gradient of sigmoid from its output: ``grad_in = grad_out * y * (1 - y)``.

    Args:
        grad_out: any shape, float32/float64.
        y: sigmoid output, same shape and dtype.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.sigmoid_backward(grad_out, y)


def tanh_forward(x):
    """Hyperbolic tangent ``y = tanh(x)``.

    Args:
        x: any shape, float32/float64.
    Returns:
        y, same shape and dtype.
    """
    return _C.tanh_forward(x)


def tanh_backward(grad_out, y):
    """Gradient of tanh from its output: ``grad_in = grad_out * (1 - y**2)``.

    Args:
        grad_out: any shape, float32/float64.
        y: tanh output, same shape and dtype.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.tanh_backward(grad_out, y)


def relu_forward(x):
    """Rectified linear unit ``y = max(x, 0)`` (NaN stays NaN).

    Args:
        x: any shape, float32/float64.
    Returns:
        y, same shape and dtype.
    """
    return _C.relu_forward(x)


def relu_backward(grad_out, y):
    """Gradient of relu from its output: ``grad_in = grad_out where y > 0, else 0``.

    Args:
        grad_out: any shape, float32/float64.
        y: relu output, same shape and dtype.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.relu_backward(grad_out, y)


def leaky_relu_forward(x, negative_slope=0.01):
    """Leaky ReLU ``y = x if x > 0 else negative_slope * x``.

    Args:
        x: any shape, float32/float64.
        negative_slope: finite float.
    Returns:
        y, same shape and dtype.
    """
    return _C.leaky_relu_forward(x, negative_slope)


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    """Gradient of leaky ReLU: ``grad_in = grad_out if x > 0 else negative_slope * grad_out``.

    Args:
        grad_out: any shape, float32/float64.
        x: the forward input, same shape and dtype.
        negative_slope: finite float, as in the forward.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.leaky_relu_backward(grad_out, x, negative_slope)


def elu_forward(x, alpha=1.0):
    """Exponential linear unit ``y = x if x > 0 else alpha * (exp(x) - 1)``.

    Args:
        x: any shape, float32/float64.
        alpha: finite float.
    Returns:
        y, same shape and dtype.
    """
    return _C.elu_forward(x, alpha)


def elu_backward(grad_out, x, alpha=1.0):
    """Gradient of ELU: ``grad_in = grad_out if x > 0 else grad_out * alpha * exp(x)``.

    Args:
        grad_out: any shape, float32/float64.
        x: the forward input, same shape and dtype.
        alpha: finite float, as in the forward.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.elu_backward(grad_out, x, alpha)


def selu_forward(x):
    """Scaled ELU ``y = scale * (x if x > 0 else alpha * (exp(x) - 1))``.

    ``alpha = 1.6732632423543772``, ``scale = 1.0507009873554805`` (PyTorch's constants).

    Args:
        x: any shape, float32/float64.
    Returns:
        y, same shape and dtype.
    """
    return _C.selu_forward(x)


def selu_backward(grad_out, x):
    """Gradient of SELU: ``grad_in = grad_out * scale * (1 if x > 0 else alpha * exp(x))``.

    Args:
        grad_out: any shape, float32/float64.
        x: the forward input, same shape and dtype.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.selu_backward(grad_out, x)


def prelu_forward(x, weight):
    """Parametric ReLU ``y = x if x > 0 else w[c] * x``, c the channel (dim 1) of the element.

    Args:
        x: (N, C, ...) float32/float64; any shape when weight is shared.
        weight: (C,) slopes, or (1,) for one slope shared by all channels; same dtype.
    Returns:
        y, same shape and dtype as x.
    """
    return _C.prelu_forward(x, weight)


def prelu_backward(grad_out, x, weight):
    """Gradients of PReLU.

    ``grad_in = grad_out if x > 0 else w[c] * grad_out``;
    ``grad_weight[c] = sum of grad_out * x over the elements of channel c with x < 0``
    (over all elements for a shared weight).

    Args:
        grad_out: shape of x, float32/float64.
        x: the forward input, (N, C, ...).
        weight: (C,) or (1,), same dtype.
    Returns:
        (grad_in, grad_weight) with the shapes of x and weight.
    """
    return _C.prelu_backward(grad_out, x, weight)


def rrelu_forward(x, lower=1.0 / 8, upper=1.0 / 3, training=False, seed=0, step=0):
    """Randomized leaky ReLU ``y = x if x > 0 else a * x``.

    Training: ``a = lower + (upper - lower) * u`` per element, u uniform in [0, 1) from the
    counter-based generator keyed by (seed, step) (element i always gets the same u, whatever the
    thread count). Eval: ``a = (lower + upper) / 2``. The per-element slopes are returned as
    ``noise = 1 where x > 0 else a`` (PyTorch's rrelu_with_noise), for :func:`rrelu_backward`.

    Args:
        x: any shape, float32/float64.
        lower, upper: finite floats with 0 <= lower <= upper.
        training: bool.
        seed, step: integers in [0, 2**64).
    Returns:
        (y, noise), both with the shape and dtype of x.
    """
    return _C.rrelu_forward(x, lower, upper, training, seed, step)


def rrelu_backward(grad_out, noise):
    """Gradient of RReLU: ``grad_in = grad_out * noise``.

    Args:
        grad_out: any shape, float32/float64.
        noise: the slopes returned by :func:`rrelu_forward`, same shape and dtype.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.rrelu_backward(grad_out, noise)
