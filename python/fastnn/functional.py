"""The C++ kernels, stateless, on NumPy arrays (float32 or float64; dtypes are never converted).

Each function has a NumPy reference of the same name in :mod:`fastnn.reference`, which is the
executable specification it is tested against. Inputs are read without copies when C-contiguous
(``matmul`` also maps strided and transposed views); other layouts are copied once.
Bad arguments raise ``TypeError`` (wrong type or dtype) or ``ValueError`` (shape, value), with the
op's name first: ``[matmul] inner dimensions differ: ...``.
"""

from ._config import _C

# --- gemm ---------------------------------------------------------------------------------------


def matmul(a, b, out=None):
    """Matrix product ``a @ b``.

    Args:
        a: (M, K) float32/float64; C order, Fortran order, transposed and column-sliced views are
            read in place.
        b: (K, N), same dtype.
        out: optional C-contiguous (M, N) array to write into (no allocation).
    Returns:
        (M, N) array.
    """
    return _C.matmul(a, b, out)


def bmm(a, b, out=None):
    """Batched matrix product ``c[i] = a[i] @ b[i]``.

    Args:
        a: (B, M, K) float32/float64.
        b: (B, K, N), same dtype.
        out: optional C-contiguous (B, M, N) array to write into.
    Returns:
        (B, M, N) array.
    """
    return _C.bmm(a, b, out)

# --- linear -------------------------------------------------------------------------------------

# --- activations --------------------------------------------------------------------------------


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
    """Randomized leaky ReLU ``y = x if x >= 0 else a * x``.

    Training: ``a = lower + (upper - lower) * u`` per element, u uniform in [0, 1) from the
    counter-based generator keyed by (seed, step) (element i always gets the same u, whatever the
    thread count). Eval: ``a = (lower + upper) / 2``. The per-element slopes are returned as
    ``noise = 1 where x >= 0 else a`` (PyTorch's rrelu_with_noise), for :func:`rrelu_backward`.

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


def softmax_forward(x):
    """Softmax over the last axis ``y = exp(x - max(x)) / sum(exp(x - max(x)))``.

    Args:
        x: (..., K) float32/float64, ndim >= 1.
    Returns:
        y, same shape and dtype; every row sums to 1.
    """
    return _C.softmax_forward(x)


def softmax_backward(grad_out, y):
    """Gradient of softmax from its output: ``grad_in = y * (g - sum(g * y, last axis))``.

    Args:
        grad_out: (..., K) float32/float64.
        y: softmax output, same shape and dtype.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.softmax_backward(grad_out, y)


def log_softmax_forward(x):
    """Log-softmax over the last axis ``y = x - max(x) - log(sum(exp(x - max(x))))``.

    Args:
        x: (..., K) float32/float64, ndim >= 1.
    Returns:
        y, same shape and dtype.
    """
    return _C.log_softmax_forward(x)


def log_softmax_backward(grad_out, y):
    """Gradient of log-softmax from its output: ``grad_in = g - exp(y) * sum(g, last axis)``.

    Args:
        grad_out: (..., K) float32/float64.
        y: log_softmax output, same shape and dtype.
    Returns:
        grad_in, same shape and dtype.
    """
    return _C.log_softmax_backward(grad_out, y)


def maxout_forward(x, pieces):
    """Maxout ``y[n, c] = max_p x[n, c * pieces + p]`` over groups of ``pieces`` adjacent features.

    The Linear layer producing the C * pieces values is separate (max(w1ᵀx + b1, ..., wkᵀx + bk)).

    Args:
        x: (N, C * pieces) float32/float64.
        pieces: int >= 1 dividing x.shape[1].
    Returns:
        (y, argmax): y (N, C) of x's dtype; argmax (N, C) int64, the index within its group of the
        first maximum (a NaN counts as the maximum).
    """
    return _C.maxout_forward(x, pieces)


def maxout_backward(grad_out, argmax, pieces):
    """Gradient of maxout: ``grad_in[n, c * pieces + argmax[n, c]] = grad_out[n, c]``, 0 elsewhere.

    Args:
        grad_out: (N, C) float32/float64.
        argmax: (N, C) int64 from :func:`maxout_forward`, values in [0, pieces).
        pieces: int >= 1.
    Returns:
        grad_in (N, C * pieces), dtype of grad_out.
    """
    return _C.maxout_backward(grad_out, argmax, pieces)


# --- loss ---------------------------------------------------------------------------------------

# --- batchnorm ----------------------------------------------------------------------------------

# --- dropout ------------------------------------------------------------------------------------

# --- end ----------------------------------------------------------------------------------------
