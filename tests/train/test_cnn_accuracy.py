"""Acceptance (issue 9, CI's slow job): BENCH.md's CNN (fastnn.models.simple_cnn) reaches >= 0.90 test
accuracy on the full Fashion-MNIST in 3 epochs, Adam lr 1e-3, batch 128 (PyTorch: 0.897 after 2)."""

import os
import time

import pytest

import fastnn
from fastnn import optim

FULL_DATA = "/usr/share/datasets/fashion-mnist"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FULL_DATA), reason=f"full Fashion-MNIST not installed at {FULL_DATA}")
def test_bench_cnn_reaches_90_percent_in_3_epochs():
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(path=FULL_DATA, flatten=False)
    assert X.shape == (60000, 1, 28, 28)
    fastnn.manual_seed(0)
    model = fastnn.models.simple_cnn()
    start = time.perf_counter()
    history = fastnn.fit(model, X, y, optimizer=optim.Adam(model.parameters(), lr=1e-3), epochs=3, batch_size=128,
                         seed=0, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = fastnn.evaluate(model, Xt, yt)["accuracy"]
    assert accuracy >= 0.90, (accuracy, history.history, f"{seconds:.0f} s")
    folded = fastnn.nn.fold_batchnorm(model)  # the inference model classifies as the trained one
    assert fastnn.evaluate(folded, Xt, yt)["accuracy"] == pytest.approx(accuracy, abs=2e-4)
