"""Model builders for the ensemble tests (module-level: Bagging calls them in this process)."""

from fastnn import nn


def small(d=10, k=3, h=8):
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k))


def fashion_mlp():
    return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
