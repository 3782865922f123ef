"""Problems for the second-order methods: Rosenbrock, convex quadratics, L2-regularized logistic
regression, and a small MLP with a fastnn closure."""

import numpy as np

from fastnn import nn


def rosenbrock(x):
    x = np.asarray(x, dtype=np.float64)
    f = np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return float(f), g


def rosenbrock_hess(x):
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    H = np.zeros((n, n))
    for i in range(n - 1):
        H[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        H[i, i + 1] = H[i + 1, i] = -400 * x[i]
        H[i + 1, i + 1] += 200
    return H


def quadratic(rng, n, dtype=np.float64, cond=50.0):
    """f(x) = x'Ax/2 - b'x with A symmetric positive definite of condition number `cond`."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (q * np.geomspace(1, cond, n)) @ q.T
    A = (A + A.T) / 2
    b = rng.standard_normal(n)
    A, b = A.astype(dtype), b.astype(dtype)

    def fun(x):
        x = np.asarray(x, dtype=dtype)
        return float(0.5 * x @ A @ x - b @ x), (A @ x - b).astype(dtype)

    return fun, A, b, np.linalg.solve(A.astype(np.float64), b.astype(np.float64))


def logistic(rng, n=200, d=5, l2=1e-2):
    """Mean binary logistic loss + l2/2 |w|^2 (bias included) on synthetic data, f(w), grad, hessian."""
    X = rng.standard_normal((n, d))
    w_true = rng.standard_normal(d)
    y = (X @ w_true + 0.5 * rng.standard_normal(n) > 0).astype(np.float64)

    def fun(w):
        w = np.asarray(w, dtype=np.float64)
        z = X @ w
        f = np.mean(np.logaddexp(0, z) - y * z) + 0.5 * l2 * w @ w
        p = 1 / (1 + np.exp(-z))
        return float(f), X.T @ (p - y) / n + l2 * w

    def hess(w):
        p = 1 / (1 + np.exp(-(X @ np.asarray(w, dtype=np.float64))))
        return (X.T * (p * (1 - p))) @ X / n + l2 * np.eye(d)

    return fun, hess, d


def mlp_problem(rng, dtype=np.float64, n=40, features=5, hidden=7, classes=3, seed=0):
    """A small MLP with its closure (zero_grad, forward, cross-entropy, backward) on fixed data."""
    model = nn.Sequential(nn.Linear(features, hidden, dtype=dtype), nn.Tanh(), nn.Linear(hidden, classes, dtype=dtype))
    X = rng.standard_normal((n, features)).astype(dtype)
    y = rng.integers(0, classes, n)
    loss_fn = nn.CrossEntropyLoss()

    def closure():
        model.zero_grad()
        loss = loss_fn(model(X), y)
        model.backward(loss_fn.backward())
        return loss

    return model, X, y, closure


def closure_of(fun, p, calls=None):
    """A step(closure) closure for a flat problem: fun(x) -> (f, g) evaluated at p.data, writing g
    into p.grad; each call appends to `calls` when given (evaluation counts)."""
    def closure():
        f, g = fun(p.data)
        p.grad[...] = g
        if calls is not None:
            calls.append(1)
        return f
    return closure
