"""The image layers and containers at their boundaries: an empty batch, a batch of one, a
Python-written neighbour returning the wrong channels, and sizes too large to build."""

import numpy as np
import pytest

from fastnn import nn

MAKERS = {
    "Conv2d": lambda: nn.Conv2d(3, 2, 3),
    "MaxPool2d": lambda: nn.MaxPool2d(2),
    "DenseBlock": lambda: nn.DenseBlock(2, 3, 4),
    "Residual": lambda: nn.Residual(nn.Conv2d(3, 3, 3, padding=1)),
    "Concat": lambda: nn.Concat(nn.Conv2d(3, 2, 1), nn.MaxPool2d(1)),
}
OUTPUTS = {"Conv2d": (1, 2, 4, 4), "MaxPool2d": (1, 3, 3, 3), "DenseBlock": (1, 11, 6, 6), "Residual": (1, 3, 6, 6),
           "Concat": (1, 5, 6, 6)}


class FiveChannels(nn.Module):
    """A Python-written layer that returns 5 channels whatever it is given."""

    def forward(self, x):
        return np.zeros((x.shape[0], 5, 6, 6), x.dtype)

    def backward(self, g):
        return np.zeros((g.shape[0], 3, 6, 6), g.dtype)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_an_empty_batch_is_refused_and_a_batch_of_one_runs(kind):
    with pytest.raises(ValueError, match=rf"\[{kind}\.forward\] x is empty \(shape \(0, 3, 6, 6\)\)"):
        MAKERS[kind]()(np.zeros((0, 3, 6, 6), np.float32))
    layer = MAKERS[kind]()
    y = layer(np.ones((1, 3, 6, 6), np.float32))
    assert y.shape == OUTPUTS[kind]
    assert layer.backward(np.ones_like(y)).shape == (1, 3, 6, 6)


@pytest.mark.parametrize("kind,names", [("Conv2d", "Conv2d"), ("DenseBlock", "DenseBlock"), ("Residual", "Conv2d"),
                                        ("Concat", "Conv2d")])
def test_wrong_channels_from_a_python_written_neighbour_name_the_layer(kind, names):
    model = nn.Sequential(FiveChannels(), MAKERS[kind]())
    with pytest.raises(ValueError, match=rf"\[{names}\] expected input \(N, 3, H, W\), got \(2, 5, 6, 6\)"):
        model(np.ones((2, 3, 6, 6), np.float32))


@pytest.mark.parametrize("make,error,match", [
    (lambda: nn.Conv2d(2**32, 2**32, 3), ValueError, r"\[Conv2d\] sizes must be <= 2\^31"),
    (lambda: nn.Conv2d(3, 2**40, 3), ValueError, r"\[Conv2d\] sizes must be <= 2\^31"),
    (lambda: nn.MaxPool2d(2**40), ValueError, r"\[MaxPool2d\] kernel_size, stride and dilation must be in \[1, 2\^31\]"),
    (lambda: nn.DenseBlock(2**20, 3, 2**20), MemoryError, "Unable to allocate"),  # its parameters, before any C++
])
def test_sizes_too_large_are_refused_before_anything_runs(make, error, match):
    with pytest.raises(error, match=match):
        make()
