"""Trial functions for the tune tests: module-level, so spawned workers import them by name."""

import os

import numpy as np

from fastnn import nn

OPTIMUM = {"lr": 10 ** -2.5, "width": 3, "act": "relu"}


def bowl(config, budget):
    """A synthetic objective with its maximum 0 at OPTIMUM; `budget` adds a known bonus, so halving sees it."""
    return (-(np.log10(config["lr"]) + 2.5) ** 2 - (config["width"] - 3) ** 2
            - (0.0 if config["act"] == "relu" else 1.0) - 1.0 / budget)


def dies_once(config, budget):
    """Exits its worker the first time it runs for config["die"] (a marker file says it did)."""
    marker = config.get("marker")
    if config.get("die") and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(3)
    return float(config["x"])


def always_dies(config, budget):
    if config.get("die"):
        os._exit(4)
    return float(config["x"])


def raises(config, budget):
    raise ZeroDivisionError("the trial's own error")


def mlp(config):
    h = config["hidden"]
    return nn.Sequential(nn.Linear(20, h), nn.ReLU(), nn.Linear(h, 3))


def toy_data(n=240, seed=0):
    """Three Gaussian blobs in 20 dimensions: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 20)) * 1.5
    y = rng.integers(0, 3, n)
    X = (centers[y] + rng.normal(size=(n, 20))).astype(np.float32)
    return X, y
