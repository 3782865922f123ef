"""The C++ kernels, stateless, on NumPy arrays (float32 or float64; dtypes are never converted).

Each function has a NumPy reference of the same name in :mod:`fastnn.reference`, which is the
executable specification it is tested against. Inputs are read without copies when C-contiguous
(``matmul`` also maps strided and transposed views); other layouts are copied once.
Bad arguments raise ``TypeError`` (wrong type or dtype) or ``ValueError`` (shape, value), with the
op's name first: ``[matmul] inner dimensions differ: ...``.
"""

from contextlib import nullcontext as _nullcontext

from ._blas_pool import quiet as _quiet_blas
from ._config import _C

# A product that runs on several threads does so with other OpenBLAS pools' idle workers asleep
# (_blas_pool.py); smaller products and the other kernels skip the ~1 us that costs.
_THREADED_MACS = 2 * 512 * 1024  # gemm.h gemm_threads: below this a product stays on one thread
_NO_GUARD = _nullcontext()


def _guard(a, b, axis=-1):
    """The BLAS guard for a product of ``a.size * b.shape[axis]`` multiply-adds if it is threaded;
    bad arguments get no guard and are reported by the kernel."""
    try:
        macs = a.size * b.shape[axis]
    except (AttributeError, IndexError, TypeError):
        return _NO_GUARD
    return _quiet_blas if macs >= _THREADED_MACS else _NO_GUARD

# --- gemm ---------------------------------------------------------------------------------------


def matmul(a, b, out=None, accumulate=False):
    """Matrix product ``a @ b`` (``out += a @ b`` with ``accumulate=True``).

    Args:
        a: (M, K) float32/float64; C order, Fortran order, transposed and column-sliced views are
            read in place.
        b: (K, N), same dtype.
        out: optional C-contiguous (M, N) array to write into (no allocation).
        accumulate: add the product into ``out`` (which must then be given), as the layers'
            gradients accumulate; the sum is formed inside the GEMM, without a second pass.
    Returns:
        (M, N) array.
    """
    with _guard(a, b):
        return _C.matmul(a, b, out, accumulate)


def bmm(a, b, out=None):
    """Batched matrix product ``c[i] = a[i] @ b[i]``.

    Args:
        a: (B, M, K) float32/float64.
        b: (B, K, N), same dtype.
        out: optional C-contiguous (B, M, N) array to write into.
    Returns:
        (B, M, N) array.
    """
    with _guard(a, b):
        return _C.bmm(a, b, out)

# --- linear -------------------------------------------------------------------------------------


def linear_forward(x, weight, bias=None, activation="none", negative_slope=0.01):
    """Fully connected layer with a fused bias and activation: ``y = act(x @ weight.T + bias)``.

    Args:
        x: (N, in) float32/float64; C order, Fortran order, transposed and column-sliced views
            are read in place.
        weight: (out, in), same dtype (PyTorch layout), read in place like x.
        bias: (out,) or None.
        activation: "none", "relu", "leaky_relu", "sigmoid" or "tanh".
        negative_slope: leaky_relu's slope for negative inputs.
    Returns:
        y: (N, out) array.
    """
    with _guard(x, weight, 0):
        return _C.linear_forward(x, weight, bias, activation, negative_slope)


def linear_backward(grad_out, x, weight, y=None, activation="none", negative_slope=0.01,
                    need_input_grad=True, need_bias_grad=True, grad_weight_out=None, grad_bias_out=None):
    """Gradients of :func:`linear_forward` from the upstream gradient and the saved output.

    ``g = grad_out * act'(y)`` (act' written in terms of y: relu ``y > 0``, leaky_relu
    ``1 if y > 0 else negative_slope``, sigmoid ``y (1 - y)``, tanh ``1 - y**2``), then
    ``grad_input = g @ weight``, ``grad_weight = g.T @ x``, ``grad_bias = g.sum(0)``.

    Args:
        grad_out: (N, out) float32/float64, same dtype as x.
        x: (N, in), the forward input (any layout, as in linear_forward).
        weight: (out, in).
        y: (N, out), the output of linear_forward; required unless activation is "none".
        activation, negative_slope: as given to linear_forward (leaky_relu needs negative_slope > 0).
        need_input_grad, need_bias_grad: skip those gradients (None is returned in their place).
        grad_weight_out: optional C-contiguous (out, in) array; grad_weight is added to it in place
            (``+=``, accumulating over calls) and it is returned.
        grad_bias_out: optional C-contiguous (out,) array, accumulated the same way.
    Returns:
        (grad_input (N, in) or None, grad_weight (out, in), grad_bias (out,) or None).
    """
    with _guard(grad_out, x):
        return _C.linear_backward(grad_out, x, weight, y, activation, negative_slope, need_input_grad,
                                  need_bias_grad, grad_weight_out, grad_bias_out)

# --- im2col -------------------------------------------------------------------------------------


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """The patches of an NCHW image as the rows of a matrix (the layout conv2d's GEMM reads):
    ``cols[(n*P + p)*Q + q, (c*kh + i)*kw + j] = x[n, c, p*sh + i*dh - ph, q*sw + j*dw - pw]``
    (0 in the padding); ``P = (H + 2 ph - dh (kh - 1) - 1) // sh + 1``, Q likewise.

    Args:
        x: (N, C, H, W) float32/float64.
        kernel_size, stride, padding, dilation: int or (h, w) pair, as torch.nn.Conv2d's.
    Returns:
        cols: (N*P*Q, C*kh*kw), x's dtype.
    """
    return _C.im2col(x, kernel_size, stride, padding, dilation)


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """The adjoint of :func:`im2col`: every entry of cols is added to the pixel it was read from
    (overlapping patches sum, taps in the padding are dropped).

    Args:
        cols: (N*P*Q, C*kh*kw) float32/float64.
        input_shape: (N, C, H, W) of the image im2col read.
        kernel_size, stride, padding, dilation: as given to im2col.
    Returns:
        x: (N, C, H, W), cols' dtype.
    """
    return _C.col2im(cols, input_shape, kernel_size, stride, padding, dilation)

# --- conv ---------------------------------------------------------------------------------------


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) as torch.nn.functional.conv2d: im2col + one GEMM per
    group over the whole minibatch, ``Y_g = cols_g W_g^T + b_g``; 1x1 stride-1 unpadded kernels
    skip im2col.

    Args:
        x: (N, C, H, W) float32/float64.
        weight: (O, C/groups, kh, kw), same dtype (PyTorch layout).
        bias: (O,) or None.
        stride, padding, dilation: int or (h, w) pair; groups: divides C and O (groups = C = O is
            depthwise).
    Returns:
        y: (N, O, P, Q).
    """
    return _C.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need_input_grad=True,
                    need_bias_grad=True, grad_weight_out=None, grad_bias_out=None):
    """Gradients of :func:`conv2d_forward`: ``dW_g = dY_g^T cols_g``, ``db = sum_{n,p,q} dY``,
    ``dx = col2im([dY_g W_g]_g)`` (dY the gradient as (N*P*Q, O) in NHWC order).

    Args:
        grad_out: (N, O, P, Q) float32/float64, the gradient of conv2d_forward's output.
        x, weight, stride, padding, dilation, groups: as given to conv2d_forward.
        need_input_grad, need_bias_grad: skip those gradients (None is returned in their place).
        grad_weight_out: optional C-contiguous (O, C/groups, kh, kw) array; grad_weight is added to
            it in place (``+=``) and it is returned. grad_bias_out: optional (O,), the same way.
    Returns:
        (grad_input (N, C, H, W) or None, grad_weight (O, C/groups, kh, kw), grad_bias (O,) or None).
    """
    return _C.conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups, need_input_grad,
                              need_bias_grad, grad_weight_out, grad_bias_out)

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


def cross_entropy_forward(logits, target, reduction="mean"):
    """Softmax cross-entropy of logits against class labels or class probabilities.

    ``loss_i = -sum_c t_ic log_softmax(logits_i)_c`` with the log-sum-exp trick (no overflow for
    large logits); ``t_i`` is one-hot(target[i]) for labels. Accumulated in double.

    Args:
        logits: (N, C) float32/float64.
        target: (N,) int64/int32 class labels in [0, C), or (N, C) class probabilities (one-hot
            rows, or soft labels; finite) of the logits' dtype.
        reduction: "mean" (divide the sum over rows by N) or "sum".
    Returns:
        The loss as a Python float.
    """
    return _C.cross_entropy_forward(logits, target, reduction)


def cross_entropy_backward(logits, target, grad=1.0, reduction="mean"):
    """Gradient of ``grad * cross_entropy_forward(logits, target)`` with respect to the logits.

    ``grad_logits_i = (softmax(logits_i) * sum_c t_ic - t_i) * grad / N`` (no ``/ N`` for "sum").

    Args:
        logits: (N, C) float32/float64.
        target: (N,) int64/int32 class labels or (N, C) class probabilities, as in the forward.
        grad: upstream gradient of the loss (a finite float).
        reduction: "mean" or "sum".
    Returns:
        grad_logits: (N, C), dtype of logits.
    """
    return _C.cross_entropy_backward(logits, target, grad, reduction)


def cross_entropy_forward_backward(logits, target, reduction="mean"):
    """Cross-entropy loss and its gradient (upstream gradient 1) in one pass over the logits.

    Same formulas as :func:`cross_entropy_forward` and :func:`cross_entropy_backward`.

    Args:
        logits: (N, C) float32/float64.
        target: (N,) int64/int32 class labels or (N, C) class probabilities.
        reduction: "mean" or "sum".
    Returns:
        (loss, grad_logits): a Python float and an (N, C) array of the logits' dtype.
    """
    return _C.cross_entropy_forward_backward(logits, target, reduction)


def binary_cross_entropy_with_logits_forward(logits, target, reduction="mean"):
    """Binary cross-entropy on logits, in the stable form.

    ``loss = mean(max(z, 0) - z * t + log(1 + exp(-|z|)))`` over all elements
    (``= -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))``). Accumulated in double.

    Args:
        logits: any shape, float32/float64.
        target: same shape and dtype as logits, targets in [0, 1].
        reduction: "mean" (divide by the number of elements) or "sum".
    Returns:
        The loss as a Python float.
    """
    return _C.binary_cross_entropy_with_logits_forward(logits, target, reduction)


def binary_cross_entropy_with_logits_backward(logits, target, grad=1.0, reduction="mean"):
    """Gradient of ``grad * binary_cross_entropy_with_logits_forward`` with respect to the logits.

    ``grad_logits = (sigmoid(z) - t) * grad / n`` (no ``/ n`` for "sum"), n = logits.size.

    Args:
        logits: any shape, float32/float64.
        target: same shape and dtype.
        grad: upstream gradient of the loss (a finite float).
        reduction: "mean" or "sum".
    Returns:
        grad_logits: shape and dtype of logits.
    """
    return _C.binary_cross_entropy_with_logits_backward(logits, target, grad, reduction)


def binary_cross_entropy_with_logits_forward_backward(logits, target, reduction="mean"):
    """Binary cross-entropy with logits and its gradient (upstream gradient 1) in one pass.

    Args:
        logits: any shape, float32/float64.
        target: same shape and dtype.
        reduction: "mean" or "sum".
    Returns:
        (loss, grad_logits): a Python float and an array shaped like logits.
    """
    return _C.binary_cross_entropy_with_logits_forward_backward(logits, target, reduction)


def mse_forward(input, target, reduction="mean"):
    """Mean squared error.

    ``loss = sum((input - target)**2) / n`` over all n elements (no ``/ n`` for "sum").

    Args:
        input: any shape, float32/float64.
        target: same shape and dtype.
        reduction: "mean" or "sum".
    Returns:
        The loss as a Python float (accumulated in double).
    """
    return _C.mse_forward(input, target, reduction)


def mse_backward(input, target, grad=1.0, reduction="mean"):
    """Gradient of ``grad * mse_forward(input, target)`` with respect to the input.

    ``grad_input = 2 * (input - target) * grad / n`` (no ``/ n`` for "sum").

    Args:
        input: any shape, float32/float64.
        target: same shape and dtype.
        grad: upstream gradient of the loss (a finite float).
        reduction: "mean" or "sum".
    Returns:
        grad_input: shape and dtype of input.
    """
    return _C.mse_backward(input, target, grad, reduction)


def mse_forward_backward(input, target, reduction="mean"):
    """Mean squared error and its gradient (upstream gradient 1) in one pass.

    Args:
        input: any shape, float32/float64.
        target: same shape and dtype.
        reduction: "mean" or "sum".
    Returns:
        (loss, grad_input): a Python float and an array shaped like input.
    """
    return _C.mse_forward_backward(input, target, reduction)


# --- batchnorm ----------------------------------------------------------------------------------


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Batch normalization forward, per channel (BatchNorm1d on (N, C), BatchNorm2d on (N, C, H, W)).

    Training: ``mu, var = mean and biased variance of the n = N*H*W values of each channel``,
    ``y = gamma * (x - mu) / sqrt(var + eps) + beta``; the running statistics, if given, are updated
    in place: ``running_mean = (1-momentum) running_mean + momentum mu``,
    ``running_var = (1-momentum) running_var + momentum var n/(n-1)``.
    Eval: the folded affine ``y = scale * x + shift`` (see :func:`batch_norm_fold`).

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64.
        weight: (C,) gamma, or None (1).
        bias: (C,) beta, or None (0).
        running_mean: (C,) C-contiguous writeable array of x's dtype, or None (training only).
        running_var: (C,) likewise; both or neither.
        training: True for batch statistics (needs more than 1 value per channel), False for the
            running statistics.
        momentum: running-average factor in [0, 1].
        eps: added to the variance, > 0.
    Returns:
        (y, save_mean, save_invstd): y shaped like x; save_mean (C,) the mean used (mu or
        running_mean); save_invstd (C,) ``1 / sqrt(var + eps)`` with the variance used.
    """
    return _C.batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps)


def batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, training=True):
    """Batch normalization backward from the forward's saved statistics.

    With ``x_hat = (x - save_mean) * save_invstd`` per channel: ``grad_bias = sum g``,
    ``grad_weight = sum g * x_hat``; training: ``dx = gamma * invstd / n * (n g - grad_bias -
    x_hat * grad_weight)``; eval: ``dx = g * gamma * invstd``.

    Args:
        grad_out: upstream gradient g, shaped like x.
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64, the forward's input.
        weight: (C,) gamma, or None (1).
        save_mean: (C,) from :func:`batch_norm_forward`.
        save_invstd: (C,) from :func:`batch_norm_forward`.
        training: the mode the forward ran in.
    Returns:
        (grad_input, grad_weight, grad_bias): shaped like x, (C,), (C,); the last two also when
        weight is None.
    """
    return _C.batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, training)


def batch_norm_fold(weight, bias, running_mean, running_var, eps=1e-5):
    """The folded inference affine of batch normalization (seed 001 eq. 5.18).

    ``scale = gamma / sqrt(running_var + eps)``, ``shift = beta - running_mean * scale``, so that
    eval-mode batch normalization is ``y = scale * x + shift``.

    Args:
        weight: (C,) gamma, or None (1).
        bias: (C,) beta, or None (0).
        running_mean: (C,) float32/float64.
        running_var: (C,), same dtype.
        eps: > 0.
    Returns:
        (scale, shift), each (C,).
    """
    return _C.batch_norm_fold(weight, bias, running_mean, running_var, eps)


def batch_norm_affine(x, scale, shift):
    """Per-channel affine ``y = scale[c] * x + shift[c]``: one multiply-add per element.

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64.
        scale: (C,), same dtype.
        shift: (C,), same dtype.
    Returns:
        y shaped like x.
    """
    return _C.batch_norm_affine(x, scale, shift)


def batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5, p=0.0,
                            seed=0, step=0):
    """Batch normalization, ReLU and (training only) inverted dropout in one pass over the output.

    ``z = batch_norm(x)`` as :func:`batch_norm_forward` (training: batch statistics, running
    statistics updated in place; eval: the folded affine), ``y = relu(z) * keep / (1 - p)`` with
    the keep mask of ``dropout_forward(relu(z), p, seed, step)`` in training and no dropout in
    eval. Equal, bit for bit, to those three functions called one after the other.

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64.
        weight: (C,) gamma, or None (1).
        bias: (C,) beta, or None (0).
        running_mean: (C,) C-contiguous writeable array of x's dtype, or None (training only).
        running_var: (C,) likewise; both or neither.
        training: True for batch statistics and dropout, False for the running statistics and no dropout.
        momentum: running-average factor in [0, 1].
        eps: added to the variance, > 0.
        p: drop probability in [0, 1) (0: batch norm + ReLU only).
        seed: integer in [0, 2**64), as for :func:`dropout_forward`.
        step: integer in [0, 2**64), as for :func:`dropout_forward`.
    Returns:
        (y, save_mean, save_invstd, mask): y shaped like x; save_mean, save_invstd (C,) as from
        :func:`batch_norm_forward`; mask a uint8 array shaped like x for the backward, bit 0 set where
        z > 0 (ReLU passes) and bit 1 where dropout kept the element (always in eval or with p = 0).
    """
    return _C.batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, p, seed,
                                      step)


def batch_norm_relu_backward(grad_out, x, weight, save_mean, save_invstd, mask, training=True, p=0.0):
    """Gradient of :func:`batch_norm_relu_forward`: batch-norm backward of the masked gradient.

    ``g_z = grad_out * [mask bit 0] * [mask bit 1] / (1 - p)`` (the ReLU and dropout derivatives),
    then :func:`batch_norm_backward` on ``g_z``, in the same two passes over the data.

    Args:
        grad_out: upstream gradient, shaped like x.
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64, the forward's input.
        weight: (C,) gamma, or None (1).
        save_mean: (C,) from the forward.
        save_invstd: (C,) from the forward.
        mask: uint8 array shaped like x, from the forward.
        training: the mode the forward ran in.
        p: the forward's drop probability in [0, 1) (ignored when training is False: no dropout in eval).
    Returns:
        (grad_input, grad_weight, grad_bias): shaped like x, (C,), (C,).
    """
    return _C.batch_norm_relu_backward(grad_out, x, weight, save_mean, save_invstd, mask, training, p)

# --- dropout ------------------------------------------------------------------------------------


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


# --- finite -------------------------------------------------------------------------------------


def first_nonfinite(x):
    """Flat (C-order) index of the first NaN or infinity in x, or -1 when all values are finite.

    The check fit() runs on its data: both threads scan, vectorized (NumPy's equivalent,
    ``np.isfinite(x).all()``, runs on one thread and allocates a boolean array).

    Args:
        x: float32 or float64 array of any shape (C-contiguous is fastest; others are copied).
    Returns:
        int.
    """
    return _C.first_nonfinite(x)


# --- end ----------------------------------------------------------------------------------------
