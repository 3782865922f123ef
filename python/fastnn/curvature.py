"""Curvature of a model's loss: exact Hessian-vector products, Gauss-Newton products, the dense
Hessian of small models, and its extreme eigenvalues.

    hv = fastnn.hvp(model, "cross_entropy", X, y, v)     # H v, exact (Pearlmutter's R-operator)
    gv = fastnn.gnvp(model, "cross_entropy", X, y, v)    # J^T H_loss J v (PSD)
    H = fastnn.hessian(model, "mse", X, y)               # dense, models up to max_params
    top = fastnn.hessian_eigenvalues(model, "cross_entropy", X, y, k=3)
    loss, g = fastnn.loss_and_grad(model, "cross_entropy", X, y)
    H = fastnn.curvature_operator(model, "cross_entropy", X, y)   # checks X, y once: H(v) per product

H is the Hessian of the loss that fit() minimizes (the mean over all of X, or the sum), with
respect to the flat parameter vector (model.flat_parameters() order); v has that length and the
model's dtype. The data runs in batches of batch_size (None: all at once); every layer runs in
training mode (training=True, the default, as PyTorch's double backward in train()) or eval
mode, with the dropout/RReLU draws of (seed, step + batch index). Running statistics, gradients
and parameters are left as they were. Parameters with requires_grad=False are constants: their
entries of v are ignored and of the result are 0.

H v is one forward, one R-forward and one R-backward pass in C++ (net/curvature.h), GIL
released. A model containing a layer written in Python (no R-operator) falls back to a central
difference of two gradients, (g(θ + εv) - g(θ - εv)) / 2ε with ε = eps^(1/3) (1 + |θ|) / |v|
(about 5 significant digits in float64, 2 to 3 in float32); gnvp needs the R-operator.
"""

import functools

import numpy as np

from ._blas_pool import quieted as _quieted
from ._config import _C
from .functional import loss as _F
from .nn.parameter import shared_buffer
from .train.checks import CLASS_KERNELS, as_cpp_model, as_loss, check_X, check_y, inferred_output_width

__all__ = ["CurvatureOperator", "curvature_operator", "gnvp", "hessian", "hessian_eigenvalues", "hvp", "loss_and_grad"]

_WHICH = ("LA", "SA", "LM")


def _loss_kernel(loss):
    """(reduction, kernel name) of a loss name or object, checked as fit checks it."""
    loss_obj, kernel = as_loss(loss)
    return loss_obj.reduction, kernel


_named_loss = functools.lru_cache(maxsize=64)(_loss_kernel)  # a name's loss object is made once, not per call


class _Problem:
    """The validated model, loss and data of one call, and what the call must restore."""

    # fastnn.hvp builds one per call: its checks are kept to what each needs (no forward for the output
    # width, one walk over the parameters, no masks when nothing is frozen): bench/bench_hvp.py
    def __init__(self, model, loss, X, y, batch_size, training, seed, step, fn, deferred=False):
        self.fn = fn
        self.reduction, self.kernel = _named_loss(loss) if isinstance(loss, str) else _loss_kernel(loss)
        self.model = as_cpp_model(model)
        self.layer = self.model._layer
        self._data = (X, y)
        if not (deferred and self.layer.has_rop and self._data_as_given(X, y)):
            self._check_data(X, y)
        if batch_size is None:
            batch_size = len(self.X)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"{fn}: batch_size must be a positive integer or None, got {batch_size!r}")
        self.batch_size = min(int(batch_size), len(self.X))
        self.training = bool(training)
        self.seed, self.step = int(seed), int(step)
        params = list(self.model.parameters())
        if not params:
            raise ValueError(f"{fn}: the model has no parameters")
        self.buf = self.model._flatten(params)
        self.n = self.buf.params.size
        if self.layer.num_params() != self.n:
            raise ValueError(f"{fn}: the model runs {self.layer.num_params()} parameters but holds {self.n} "
                             "(a layer used twice?): curvature needs each parameter once")
        self.dtype = self.buf.params.dtype
        self.params = params
        self._mark_frozen()

    def _check_data(self, X, y):
        """X and y checked and converted as fit does, against the model's output width."""
        self.X = check_X(X, self.model)
        self.width = inferred_output_width(self.model, self.X)
        self.y = check_y(y, self.kernel, len(self.X), self.width, self.model)

    def _data_as_given(self, X, y):
        """For a single product (deferred): X and y taken as they are when they need no conversion, with
        only their finiteness checked here; the C++ passes check the rest (X's shape, y's length, the
        labels against the output width), and a ValueError of theirs runs _check_data, whose messages
        name the problem (product). False: the data need _check_data now."""
        dtype = self.model.dtype
        if not (type(X) is np.ndarray and type(y) is np.ndarray and X.dtype == dtype and X.ndim >= 2 and len(X) >= 1
                and X.flags.c_contiguous and y.flags.c_contiguous and y.shape[:1] == X.shape[:1]):
            return False
        if self.kernel in CLASS_KERNELS and y.ndim == 1:
            if y.dtype != np.int64:
                return False
        elif y.dtype != dtype or _C.first_nonfinite(y) >= 0:
            return False
        if _C.first_nonfinite(X) >= 0:
            return False
        self.X, self.y, self.width = X, y, None  # width None: the data are the C++ passes' to check
        return True

    def _mark_frozen(self):
        """The entries of the constants (requires_grad=False)."""
        self.trains = tuple(p.requires_grad for p in self.params)
        self.any_frozen = not all(self.trains)  # else the masks below are skipped (a pass over n each)
        self._frozen = None

    @property
    def frozen(self):
        """Boolean mask of the constants' entries (made when first asked for)."""
        if self._frozen is None:
            self._frozen = np.zeros(self.n, bool)
            for p in self.params:
                if not p.requires_grad:
                    self._frozen[p.offset:p.offset + p.size] = True
        return self._frozen

    def still_valid(self):
        """For repeated products: the parameters still in the buffer checked at the start (else a clear
        error), and requires_grad re-read."""
        now = list(self.model.parameters())
        if (shared_buffer(self.params) is not self.buf or len(now) != len(self.params)
                or any(a is not b for a, b in zip(now, self.params))):
            raise ValueError(f"{self.fn}: the model's parameters changed (added, replaced or re-packed) since "
                             "the operator was made; make a new one")
        if tuple(p.requires_grad for p in self.params) != self.trains:
            self._mark_frozen()

    def direction(self, v, name="v"):
        if not isinstance(v, np.ndarray):
            raise TypeError(f"{self.fn}: {name} must be a numpy.ndarray, got {type(v).__name__}")
        if v.dtype != self.dtype:
            raise TypeError(f"{self.fn}: {name} must be {self.dtype} (the model's dtype), got {v.dtype}")
        if v.ndim != 1 or v.size != self.n:
            raise ValueError(f"{self.fn}: {name} must be a flat vector of the model's {self.n} parameters, "
                             f"got shape {v.shape}")
        v = np.ascontiguousarray(v)
        bad = _C.first_nonfinite(v)
        if bad >= 0:
            raise ValueError(f"{self.fn}: {name} contains NaN or infinity (first at index {bad})")
        # a copy when it is changed or could be: the passes zero the gradients and (Python layers) move the parameters
        if self.any_frozen or np.may_share_memory(v, self.buf.grads) or np.may_share_memory(v, self.buf.params):
            v = v.copy()
            if self.any_frozen:
                v[self.frozen] = 0
        return v

    def _saved(self):
        return self.buf.grads.copy(), [(arr, arr.copy()) for _, arr in self.layer.state()]

    def _restore(self, saved):
        grads, states = saved
        self.buf.grads[...] = grads
        for arr, old in states:
            arr[...] = old

    def product(self, v, gauss_newton, with_gradient=False):
        """H v or G v, the loss, and (H v with with_gradient) its gradient (else None)."""
        saved = self._saved()
        hv = np.zeros(self.n, self.dtype)
        try:
            self.buf.grads[...] = 0
            if self.layer.has_rop:
                try:
                    loss = _C.curvature_product(self.layer, self.X, self.y, self.kernel, self.reduction,
                                                self.buf.params, self.buf.grads, v, hv, self.batch_size, self.training,
                                                gauss_newton, self.seed, self.step, with_gradient)
                except ValueError:
                    if self.width is None:  # deferred checks: theirs is the clearer message when the data are bad
                        self._check_data(*self._data)
                    raise
                grad = self.buf.grads.copy() if with_gradient else None
            elif gauss_newton:
                raise ValueError(f"{self.fn}: the Gauss-Newton product needs every layer to have an R-operator; "
                                 "a layer written in Python has none (hvp falls back to gradient differences)")
            else:
                loss, grad = self._loss_grad()
                hv = self._difference(v)
        finally:
            self._restore(saved)
        if self.any_frozen:
            hv[self.frozen] = 0
            if grad is not None:
                grad[self.frozen] = 0
        return hv, loss, grad

    def _loss_grad(self):
        """Loss and gradient by forward/backward of the layers (grads is zero on entry)."""
        n = len(self.X)
        fb = {"cross_entropy": _F.cross_entropy_forward_backward, "mse": _F.mse_forward_backward,
              "bce_with_logits": _F.binary_cross_entropy_with_logits_forward_backward}[self.kernel]
        if self.reduction == "mean":
            scale = 1.0 / (n if self.kernel == "cross_entropy" else n * self.width)
        else:
            scale = 1.0
        total = 0.0
        for b, start in enumerate(range(0, n, self.batch_size)):
            xb, yb = self.X[start:start + self.batch_size], self.y[start:start + self.batch_size]
            out = self.layer.forward(xb, self.training, self.seed, self.step + b, True)
            loss, g = fb(out.reshape(len(xb), -1), yb.reshape(len(xb), -1) if yb.dtype.kind == "f" else yb, "sum")
            total += loss
            self.layer.backward(np.ascontiguousarray((g * scale).astype(self.dtype).reshape(out.shape)), False)
        return total * scale, self.buf.grads.copy()

    def _difference(self, v):
        eps = np.finfo(self.dtype).eps
        norm_v = float(np.linalg.norm(v.astype(np.float64)))
        if norm_v == 0:
            return np.zeros(self.n, self.dtype)
        theta = self.buf.params.copy()
        h = eps ** (1 / 3) * (1 + float(np.linalg.norm(theta.astype(np.float64)))) / norm_v
        try:
            self.buf.params[...] = theta + (h * v).astype(self.dtype)
            self.buf.grads[...] = 0
            _, g_plus = self._loss_grad()
            self.buf.params[...] = theta - (h * v).astype(self.dtype)
            self.buf.grads[...] = 0
            _, g_minus = self._loss_grad()
        finally:
            self.buf.params[...] = theta
        return ((g_plus.astype(np.float64) - g_minus.astype(np.float64)) / (2 * h)).astype(self.dtype)


@_quieted
def hvp(model, loss, X, y, v, batch_size=None, training=True, seed=0, step=0):
    """H v: the exact Hessian of the loss over (X, y) times v (flat, the model's dtype and size).

    loss: what fit accepts ("cross_entropy", "mse", "bce_with_logits" or a loss object).
    See the module docstring for batch_size, training, seed/step and frozen parameters.
    """
    p = _Problem(model, loss, X, y, batch_size, training, seed, step, "hvp", deferred=True)
    return p.product(p.direction(v), False)[0]


@_quieted
def gnvp(model, loss, X, y, v, batch_size=None, training=True, seed=0, step=0):
    """G v = J^T H_loss J v, the generalized Gauss-Newton matrix (positive semidefinite) times v."""
    p = _Problem(model, loss, X, y, batch_size, training, seed, step, "gnvp", deferred=True)
    return p.product(p.direction(v), True)[0]


class CurvatureOperator:
    """H (or G) of a fixed model, loss and data set as a function of v: ``op(v)`` / ``op.matvec(v)``.

    Made by curvature_operator, which checks the model, loss, X and y once (X finite, labels, the
    output width: a pass over X that fastnn.hvp repeats per call); a product then checks only v
    and that the model still holds the same parameters. The products use the parameters' values
    at call time; X and y are the arrays checked at construction (fastnn's own copies when they
    needed a conversion), so change them only through a new operator. ``shape`` (n, n) and ``dtype``
    make it usable as ``scipy.sparse.linalg.aslinearoperator(op)``.
    """

    def __init__(self, problem, gauss_newton):
        self._p = problem
        self.gauss_newton = bool(gauss_newton)
        self.shape = (problem.n, problem.n)
        self.dtype = problem.dtype

    def __call__(self, v):
        p = self._p
        p.still_valid()
        return p.product(p.direction(v), self.gauss_newton)[0]

    def matvec(self, v):
        """op(v) for v of shape (n,) or (n, 1) (scipy's LinearOperator calls it with either)."""
        v = np.asarray(v)
        column = v.ndim == 2 and v.shape[1] == 1
        out = self(v.reshape(-1).astype(self.dtype, copy=False) if column or v.dtype != self.dtype else v)
        return out.reshape(-1, 1) if column else out


@_quieted
def curvature_operator(model, loss, X, y, gauss_newton=False, batch_size=None, training=True, seed=0, step=0):
    """A CurvatureOperator: H v (gauss_newton=True: G v) per call, with the model, loss and data
    checked once (for CG, Lanczos or any loop of products over the same data)."""
    fn = "curvature_operator"
    p = _Problem(model, loss, X, y, batch_size, training, seed, step, fn)
    if gauss_newton and not p.layer.has_rop:
        raise ValueError(f"{fn}: the Gauss-Newton product needs every layer to have an R-operator; a layer "
                         "written in Python has none")
    return CurvatureOperator(p, gauss_newton)


@_quieted
def loss_and_grad(model, loss, X, y, batch_size=None, training=True, seed=0, step=0):
    """(loss, gradient): the loss fit minimizes over (X, y) and its flat gradient (a new array);
    the model's own .grad is left as it was."""
    p = _Problem(model, loss, X, y, batch_size, training, seed, step, "loss_and_grad")
    saved = p._saved()
    try:
        p.buf.grads[...] = 0
        loss_value, grad = p._loss_grad()
    finally:
        p._restore(saved)
    if p.any_frozen:
        grad[p.frozen] = 0
    return loss_value, grad


@_quieted
def hessian(model, loss, X, y, batch_size=None, training=True, seed=0, step=0, max_params=2048):
    """The dense Hessian (n, n) of the loss, from n Hessian-vector products (float64 result).

    Refuses models with more than max_params parameters (n products of a full pass each, and
    n^2 values). Symmetrized: (H + H^T) / 2.
    """
    p = _Problem(model, loss, X, y, batch_size, training, seed, step, "hessian")
    if p.n > max_params:
        raise ValueError(f"hessian: the model has {p.n} parameters, more than max_params={max_params} "
                         f"(a dense Hessian of {p.n}^2 values from {p.n} passes over the data); use hvp or "
                         "hessian_eigenvalues, or raise max_params")
    H = np.zeros((p.n, p.n))
    e = np.zeros(p.n, p.dtype)
    for i in range(p.n):
        if p.frozen[i]:
            continue
        e[i] = 1
        H[:, i] = p.product(e, False)[0]
        e[i] = 0
    return (H + H.T) / 2


@_quieted
def hessian_eigenvalues(model, loss, X, y, k=1, which="LA", batch_size=None, training=True, seed=0, step=0,
                        max_iter=None, tol=1e-6, init_seed=0, return_eigenvectors=False, gauss_newton=False):
    """The k extreme eigenvalues of the Hessian (or, gauss_newton=True, of G), by Lanczos on hvp.

    which: "LA" largest, "SA" smallest (algebraic), "LM" largest magnitude. Lanczos with full
    reorthogonalization (float64 vectors), from a random start of init_seed; it stops when the k
    Ritz values' residuals |β s_m| are below tol * max(1, |θ|), or after max_iter products
    (default min(n, max(20 k + 40, 100))). Returns the eigenvalues in float64 (sorted as which
    asks: descending for LA/LM, ascending for SA), and with return_eigenvectors the (n, k)
    unit eigenvectors too.
    """
    fn = "hessian_eigenvalues"
    p = _Problem(model, loss, X, y, batch_size, training, seed, step, fn)
    if which not in _WHICH:
        raise ValueError(f"{fn}: which must be one of {_WHICH}, got {which!r}")
    free = int((~p.frozen).sum())
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= free:
        raise ValueError(f"{fn}: k must be an integer in [1, {free}] (the trainable parameters), got {k!r}")
    m_max = min(free, max(20 * k + 40, 100)) if max_iter is None else int(max_iter)
    if m_max < k:
        raise ValueError(f"{fn}: max_iter must be >= k = {k}, got {max_iter!r}")
    rng = np.random.default_rng(init_seed)
    q = rng.standard_normal(p.n)
    q[p.frozen] = 0
    q /= np.linalg.norm(q)
    Q, alphas, betas = [q], [], []
    theta = s = None
    for j in range(m_max):
        w = p.product(Q[j].astype(p.dtype), gauss_newton)[0].astype(np.float64)
        alphas.append(float(Q[j] @ w))
        Qm = np.array(Q)
        for _ in range(2):  # full reorthogonalization, twice ("twice is enough")
            w -= Qm.T @ (Qm @ w)
        beta = float(np.linalg.norm(w))
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, s = np.linalg.eigh(T)
        order = _order(theta, which)[:k]
        done = j + 1 >= k and all(abs(beta * s[-1, i]) <= tol * max(1.0, abs(theta[i])) for i in order)
        if done or beta <= 1e-12 * max(1.0, float(np.abs(theta).max())) or j + 1 == m_max:
            break
        betas.append(beta)
        Q.append(w / beta)
    order = _order(theta, which)[:k]
    if len(order) < k:
        raise ValueError(f"{fn}: the Krylov space has dimension {len(theta)} < k = {k} (the start vector "
                         "lies in an invariant subspace); change init_seed")
    values = theta[order]
    if not return_eigenvectors:
        return values
    vectors = np.array(Q[:len(theta)]).T @ s[:, order]
    return values, vectors / np.linalg.norm(vectors, axis=0)


def _order(theta, which):
    if which == "LA":
        return np.argsort(-theta)
    if which == "SA":
        return np.argsort(theta)
    return np.argsort(-np.abs(theta))
