"""Acceptance (issue 9, CI's slow job): BENCH.md's CNN (fastnn.models.simple_cnn) reaches >= 0.90 test
accuracy on the full Fashion-MNIST in 3 epochs: Adam from lr 1e-3, batch 128, the learning rate annealed
per epoch on a cosine (1e-3, 7.5e-4, 2.5e-4), as ``python -m fastnn train --model cnn --epochs 3
--schedule cosine`` trains it. At a constant 1e-3 the third epoch ends at 0.8997-0.90 (measured, two
builds), too close to the threshold for a test; PyTorch reaches 0.897 after 2 constant epochs."""

import os
import time

import pytest

import fastnn
from fastnn import optim
from fastnn.optim.lr_scheduler import CosineAnnealingLR
from fastnn.train import LearningRateScheduler

FULL_DATA = "/usr/share/datasets/fashion-mnist"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FULL_DATA), reason=f"full Fashion-MNIST not installed at {FULL_DATA}")
def test_bench_cnn_reaches_90_percent_in_3_epochs():
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(path=FULL_DATA, flatten=False)
    assert X.shape == (60000, 1, 28, 28)
    fastnn.manual_seed(0)
    model = fastnn.models.simple_cnn()
    start = time.perf_counter()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    history = fastnn.fit(model, X, y, optimizer=opt, epochs=3, batch_size=128, seed=0, verbose=0,
                         callbacks=[LearningRateScheduler(CosineAnnealingLR(opt, T_max=3))])
    seconds = time.perf_counter() - start
    accuracy = fastnn.evaluate(model, Xt, yt)["accuracy"]
    assert accuracy >= 0.90, (accuracy, history.history, f"{seconds:.0f} s")
    folded = fastnn.nn.fold_batchnorm(model)  # the inference model classifies as the trained one
    assert fastnn.evaluate(folded, Xt, yt)["accuracy"] == pytest.approx(accuracy, abs=2e-4)
