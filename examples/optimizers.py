"""First-order optimizers compared on Fashion-MNIST: SGD, momentum, Nesterov, Adagrad, RMSprop, Adam.

Every optimizer trains the same MLP (784-128-64-10, ReLU) from the same initial weights (one
state_dict copied into each model) on the same minibatches, with the learning rates usually
recommended for it. Each epoch is validated on a held-out tenth of the training images (stratified,
seeded); the test set is scored once, at the end. Prints the training loss per epoch and a summary,
and plots the curves to a PNG when matplotlib is installed.

    python examples/optimizers.py --epochs 10
    python examples/optimizers.py --train-size 10000 --out optimizers.png
"""

import argparse
import time

import numpy as np

import fastnn
from fastnn import nn, optim

OPTIMIZERS = {  # name: (factory, description)
    "SGD": (lambda p: optim.SGD(p, lr=0.05), "lr 0.05"),
    "Momentum": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9), "lr 0.05, momentum 0.9"),
    "Nesterov": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True), "lr 0.05, momentum 0.9"),
    "Adagrad": (lambda p: optim.Adagrad(p, lr=0.05), "lr 0.05"),
    "RMSprop": (lambda p: optim.RMSprop(p, lr=1e-3), "lr 1e-3, alpha 0.99"),
    "Adam": (lambda p: optim.Adam(p, lr=1e-3), "lr 1e-3, betas (0.9, 0.999)"),
}


def build():
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def plot(results, path, title):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        print("matplotlib is not installed: no plot written (pip install matplotlib)")
        return
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        x = np.arange(1, len(r["loss"]) + 1)
        ax_loss.plot(x, r["loss"], marker="o", label=name)
        ax_acc.plot(x, r["val_accuracy"], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="training loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"loss curves written to {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default=None,
                        help="directory with the Fashion-MNIST IDX files (default: $FASTNN_DATA, the system copy, "
                             "else the bundled subset); 'bundled' forces the subset")
    parser.add_argument("--train-size", type=int, default=None, help="use the first N training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default="optimizers.png", help="PNG of the loss curves")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="fastnn threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        fastnn.set_num_threads(args.threads)

    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(path=args.data)
    X, y = X[:args.train_size], y[:args.train_size]
    print(f"Fashion-MNIST from {fastnn.datasets.fashion_mnist_source(args.data)}: {len(X)} train, {len(Xt)} test; "
          f"784-128-64-10 ReLU, batch {args.batch_size}, {args.epochs} epochs")

    fastnn.manual_seed(args.seed)
    initial = build().state_dict()  # every optimizer starts from these weights
    split = fastnn.train.ValidationSplit(0.1, stratify=True, seed=args.seed)  # the same held-out images for all
    results = {}
    for name, (factory, description) in OPTIMIZERS.items():
        model = build()
        model.load_state_dict(initial)
        start = time.perf_counter()
        history = fastnn.fit(model, X, y, optimizer=factory(model.parameters()), epochs=args.epochs,
                             batch_size=args.batch_size, validation_split=split, seed=args.seed, verbose=0)
        seconds = time.perf_counter() - start
        test = fastnn.evaluate(model, Xt, yt)
        results[name] = dict(history.history, total_seconds=seconds, description=description,
                             test_loss=test["loss"], test_accuracy=test["accuracy"])
        print(f"  {name:<9} ({description}): validation accuracy {history['val_accuracy'][-1]:.4f}, "
              f"test accuracy {test['accuracy']:.4f}")

    print("\ntraining loss per epoch")
    print(f"{'epoch':<6}" + "".join(f"{name:>10}" for name in results))
    for epoch in range(args.epochs):
        print(f"{epoch + 1:<6}" + "".join(f"{r['loss'][epoch]:>10.4f}" for r in results.values()))

    print(f"\n{'optimizer':<10}{'settings':<30}{'train loss':>11}{'val loss':>10}{'best val acc':>13}{'test loss':>11}{'test acc':>10}"
          f"{'time':>8}")
    for name, r in results.items():
        print(f"{name:<10}{r['description']:<30}{r['loss'][-1]:>11.4f}{r['val_loss'][-1]:>10.4f}"
              f"{max(r['val_accuracy']):>13.4f}{r['test_loss']:>11.4f}{r['test_accuracy']:>10.4f}{r['total_seconds']:>7.1f}s")
    plot(results, args.out, f"Optimizers on Fashion-MNIST ({len(X)} images, batch {args.batch_size})")


if __name__ == "__main__":
    main()
