"""``minimize``: scipy.optimize.minimize's interface for any flat problem, with fastnn's C++
L-BFGS, nonlinear CG, BFGS, Newton and truncated-Newton loops (the loop runs in C++ and calls
``fun_and_grad`` back for every evaluation)."""

import numbers

import numpy as np

from .._config import _C
from .second_order import (CHANGE_TOL, CONVERGED, GRADIENT_TOL, LINE_SEARCH_FAILED, MAX_EVAL, MAX_ITER, NONFINITE,
                           NOT_DESCENT, STOPPED, curvature_callback, hessian_callback)

__all__ = ["minimize", "OptimizeResult"]

_METHODS = ("lbfgs", "cg", "bfgs", "newton", "trust-ncg")
# scipy's status codes: 0 success, 1 iteration/evaluation limit, 2 line search failure, 3 NaN/inf, 4 callback
_SCIPY_STATUS = {GRADIENT_TOL: 0, CHANGE_TOL: 0, NOT_DESCENT: 0, MAX_ITER: 1, MAX_EVAL: 1, LINE_SEARCH_FAILED: 2,
                 NONFINITE: 3, STOPPED: 4}


_COMMON = {"maxfun", "tolerance_change", "lr"}
_OPTIONS = {"lbfgs": _COMMON | {"history_size"}, "cg": _COMMON | {"formula", "restart"}, "bfgs": _COMMON,
            "newton": _COMMON | {"damping"}, "trust-ncg": _COMMON | {"damping", "max_cg"}}


class OptimizeResult(dict):
    """scipy.optimize.OptimizeResult's fields: x, fun, jac, nit, nfev, njev, nhev, success, status, message."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__

    def __repr__(self):
        return "\n".join(f"{k:>8}: {v!r}" for k, v in self.items())


def _x0(x0):
    x = np.asarray(x0)
    if x.dtype.kind in "biu":
        x = x.astype(np.float64)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"minimize: x0 must be real (float32 or float64; integers are converted), got {x.dtype}")
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"minimize: x0 must be a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("minimize: x0 contains NaN or infinity")
    return np.array(x, copy=True, order="C")


def minimize(fun_and_grad, x0, method="lbfgs", hvp=None, hess=None, tol=None, maxiter=None, callback=None,
             options=None):
    """Minimizes f from x0; the loop runs in C++.

    Args:
        fun_and_grad: f(x) -> (loss, gradient (n,)), as scipy's ``fun`` with ``jac=True``. x is a
            read-only view: copy it to keep it.
        x0: (n,) starting point, float32 or float64 (the computation's dtype).
        method: "lbfgs" (history ``options["history_size"]``, default 10), "cg" (``options["formula"]``
            "pr+" or "fr"), "bfgs" (dense, n <= 20000), "newton" (``hess``, or central differences
            of gradients), or "trust-ncg" (truncated Newton-CG on ``hvp`` with Levenberg-Marquardt
            damping as the trust region, Martens' Hessian-free method; central differences
            without hvp; ``hess`` is used as H v when given).
        hvp: hvp(x, v) -> H v. hess: hess(x) -> (n, n).
        tol: stop when max |g| <= tol (default 1e-5, scipy's gtol).
        maxiter: iteration limit (default 1000). options["maxfun"]: evaluation limit (default 20 * maxiter).
        callback: callback(xk) after every iteration (a copy of x); returning True stops.
        options: per method, plus "tolerance_change" (default 1e-12 * (1 + |f(x0)|)), "damping".
    Returns:
        OptimizeResult with x, fun, jac, nit, nfev, njev, nhev, success, status (0 success,
        1 limits, 2 line-search failure, 3 NaN/inf, 4 stopped by callback) and message.
    """
    if not callable(fun_and_grad):
        raise TypeError(f"minimize: fun_and_grad must be callable f(x) -> (loss, grad), got {type(fun_and_grad).__name__}")
    if method not in _METHODS:
        raise ValueError(f"minimize: method must be one of {', '.join(map(repr, _METHODS))}, got {method!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"minimize: callback must be callable, got {type(callback).__name__}")
    options = dict(options or {})
    unknown = sorted(set(options) - _OPTIONS[method])
    if unknown:
        raise ValueError(f"minimize: unknown options for method {method!r}: {unknown} (known: {sorted(_OPTIONS[method])})")
    x = _x0(x0)
    n = x.size
    g = np.zeros(n, dtype=x.dtype)
    view = x.view()
    view.flags.writeable = False
    counts = {"nfev": 0, "nhev": 0}

    def objective():
        counts["nfev"] += 1
        out = fun_and_grad(view)
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError("minimize: fun_and_grad must return a pair (loss, gradient)")
        f, grad = out
        if not isinstance(f, numbers.Real) and not (isinstance(f, np.ndarray) and f.size == 1):
            raise TypeError(f"minimize: the loss must be a real number, got {type(f).__name__}")
        grad = np.asarray(grad)
        if grad.shape != (n,):
            raise ValueError(f"minimize: the gradient must have shape ({n},) like x0, got {grad.shape}")
        if grad.dtype.kind not in "fiu":
            raise TypeError(f"minimize: the gradient must be real, got {grad.dtype}")
        g[...] = grad
        return float(f)

    tol = 1e-5 if tol is None else float(tol)
    if not tol >= 0:
        raise ValueError(f"minimize: tol must be >= 0, got {tol}")
    maxiter = 1000 if maxiter is None else maxiter
    if not isinstance(maxiter, numbers.Integral) or isinstance(maxiter, bool) or maxiter < 1:
        raise ValueError(f"minimize: maxiter must be a positive integer, got {maxiter!r}")
    maxfun = options.pop("maxfun", 20 * int(maxiter))
    change = options.pop("tolerance_change", None)
    if change is None:
        change = 1e-12 * (1 + abs(objective()))  # also checks what fun_and_grad returns
    common = {"max_iter": int(maxiter), "max_eval": int(maxfun), "tolerance_grad": tol,
              "tolerance_change": float(change), "lr": float(options.pop("lr", 1.0))}
    if callback is not None:
        common["callback"] = lambda it, loss: not bool(callback(x.copy()))
    if method == "lbfgs":
        m = int(options.pop("history_size", 10))
        if m < 1:
            raise ValueError(f"minimize: history_size must be >= 1, got {m}")
        s, y = np.zeros((m, n), x.dtype), np.zeros((m, n), x.dtype)
        rho, ring = np.zeros(m), np.zeros(2, np.int64)
        d, prev = np.zeros(n, x.dtype), np.zeros(n, x.dtype)
        scalars, counters = np.zeros(3), np.zeros(2, np.int64)
        common["strong_wolfe"] = True
        report = _C.lbfgs_step(objective, x, g, s, y, rho, ring, d, prev, scalars, counters, common)
    elif method in ("cg", "bfgs", "newton"):
        if method == "cg":
            state = {"d_prev": np.zeros(n, x.dtype), "g_prev": np.zeros(n, x.dtype), "scalars": np.zeros(4)}
            common.update(c2=0.1, formula=options.pop("formula", "pr+"), restart=int(options.pop("restart", 0)))
        elif method == "bfgs":
            state = {"M": np.zeros(n * n, x.dtype), "scalars": np.zeros(1)}
        else:
            state = {"H": np.zeros(n * n, x.dtype), "scalars": np.zeros(2)}
            common["damping"] = float(options.pop("damping", 0.0))
        fill = hessian_callback(hess, n, "minimize", x=view) if method == "newton" else None
        if fill is not None:
            inner = fill

            def fill(H):
                counts["nhev"] += 1
                inner(H)
        report = _C.descent_minimize(method, objective, x, g, state, common, fill)
    else:
        if hvp is not None:
            if not callable(hvp):
                raise TypeError(f"minimize: hvp must be callable hvp(x, v), got {type(hvp).__name__}")
            product_of = lambda v: hvp(view, v)  # noqa: E731
        elif hess is not None:
            if not callable(hess):
                raise TypeError(f"minimize: hess must be callable hess(x), got {type(hess).__name__}")
            product_of = lambda v: np.asarray(hess(view)) @ v  # noqa: E731
        else:
            product_of = None
        product = curvature_callback(product_of, n, x.dtype, "minimize")
        if product is not None:
            inner_product = product

            def product(v, out):
                counts["nhev"] += 1
                inner_product(v, out)
        scalars = np.array([float(options.pop("damping", 0.0)), 0.0])
        common["max_cg"] = int(options.pop("max_cg", max(n, 10)))
        report = _C.hessian_free_minimize(objective, x, g, np.zeros(n, x.dtype), scalars, product, common)
        if product is None:
            counts["nhev"] = int(scalars[1])
    status = _SCIPY_STATUS[report["status"]]
    return OptimizeResult(x=x, fun=report["loss"], jac=g.copy(), nit=report["iterations"], nfev=counts["nfev"],
                          njev=counts["nfev"], nhev=counts["nhev"], success=report["status"] in CONVERGED,
                          status=status, message=report["message"])
