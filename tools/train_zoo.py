#!/usr/bin/env python
"""Trains the model zoo's shipped weights on Fashion-MNIST: python/fastnn/models/weights/<name>.fnn,
which ``fastnn.models.mlp(pretrained=True)`` and ``fastnn.models.simple_cnn(pretrained=True)`` load.

    PYTHONPATH=python python tools/train_zoo.py                    # both models, the recorded recipes
    PYTHONPATH=python python tools/train_zoo.py --models simple_cnn --epochs 10

Each model trains on the 60,000 training images (no validation split: the recipe is fixed, nothing
is selected on held-out data), with Adam and a cosine-annealed learning rate per epoch, then is
scored once on the 10,000 test images. The file is float32, saved by fastnn.save without the
optimizer; its ``extra`` records the builder's arguments ("config", which pretrained=True checks),
the recipe and the test accuracy (``fastnn.models.pretrained_info(name)``). Update the accuracy in
the builder's docstring and the README from the line this prints. One training at a time: each
uses all the threads it is given.
"""

import argparse
import sys
import time
from pathlib import Path

import fastnn
from fastnn import models, optim
from fastnn.datasets.fashion_mnist import BUNDLED_DIR
from fastnn.optim.lr_scheduler import CosineAnnealingLR
from fastnn.train import LearningRateScheduler

WEIGHTS = Path(__file__).resolve().parent.parent / "python" / "fastnn" / "models" / "weights"

# name -> (the builder's config, which pretrained=True checks; flat images?; default epochs)
RECIPES = {
    "mlp": ({"hidden": [256, 128], "batchnorm": True, "in_features": 784, "num_classes": 10, "dtype": "float32"},
            True, 20),
    "simple_cnn": ({"in_channels": 1, "num_classes": 10, "input_size": [28, 28], "dtype": "float32"}, False, 10),
}


def train(name, args, data):
    config, flat, default_epochs = RECIPES[name]
    epochs = args.epochs or default_epochs
    (X, y), (Xt, yt) = data[flat]
    fastnn.manual_seed(args.seed)
    model = getattr(models, name)()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    start = time.perf_counter()
    fastnn.fit(model, X, y, optimizer=opt, epochs=epochs, batch_size=args.batch_size, seed=args.seed, verbose=2,
               callbacks=[LearningRateScheduler(CosineAnnealingLR(opt, T_max=epochs))])
    seconds = time.perf_counter() - start
    accuracy = fastnn.evaluate(model, Xt, yt)["accuracy"]
    extra = {"config": config, "test_accuracy": round(float(accuracy), 4), "epochs": epochs, "lr": args.lr,
             "schedule": "cosine", "optimizer": "Adam", "batch_size": args.batch_size, "seed": args.seed,
             "train_images": len(X), "seconds": round(seconds, 1), "threads": fastnn.get_num_threads()}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.fnn"
    fastnn.save(path, model, extra=extra)
    print(f"{name}: test accuracy {accuracy:.4f} after {epochs} epochs ({seconds:.0f} s, "
          f"{fastnn.get_num_threads()} threads) -> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(RECIPES), help=f"comma-separated, of {list(RECIPES)}")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: mlp 20, simple_cnn 10)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's initial learning rate (default 1e-3)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", default=None, help="Fashion-MNIST directory (default: fastnn.datasets' search)")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help=f"output directory (default {WEIGHTS})")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(RECIPES)}")
    if args.threads:
        fastnn.set_num_threads(args.threads)
    if fastnn.datasets.fashion_mnist_source(args.data) == BUNDLED_DIR:
        parser.error("the full Fashion-MNIST is needed (apt-get install dataset-fashion-mnist, or --data DIR)")
    data = {flat: fastnn.datasets.fashion_mnist(args.data, flatten=flat) for flat in {RECIPES[n][1] for n in names}}
    assert all(len(d[0][0]) == 60000 for d in data.values())
    for name in names:
        train(name, args, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
