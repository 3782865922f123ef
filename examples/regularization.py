"""Regularization side by side on Fashion-MNIST (seed 002): no regularization, an L2 penalty, an
L1 penalty, dropout, early stopping and data augmentation, each on the same MLP (784-512-256-10,
ReLU, Adam 1e-3, batch 64) from the same initial weights, on the same small training set that the
plain model overfits.

    J_reg(Θ) = J(Θ) + λ·R(Θ):  L2  Θ ← Θ − ρ(∇J + λΘ)    (optim's weight_decay)
                              L1  Θ ← Θ − ρ(∇J + λ·sign Θ)  (optim's l1)
Dropout(0.5) after each hidden layer (0.2 on the input); early stopping on the validation loss
(patience 3, the best epoch's weights restored); augmentation: random shifts of up to 2 pixels and
horizontal flips, drawn per minibatch inside the C++ epoch loop. Biases are not penalized.

Prints one row per method (epochs run, final training and validation accuracy, the gap between
them, test accuracy) and, with --plot, the training and validation curves of all of them.

    python examples/regularization.py                          # 8000 + 2000 images, 20 epochs: ~1 min on 2 cores
    python examples/regularization.py --train-size 0 --epochs 40 --plot regularization.png
"""

import time

import numpy as np

import fastnn
from fastnn import nn, optim

import common

SIZES = (784, 512, 256, 10)


def build(dropout=False, seed=0):
    """The MLP; its Linear weights depend on `seed` only (so every method starts from the same point)."""
    layers = [nn.Dropout(0.2)] if dropout else []
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(n_in, n_out, generator=np.random.default_rng([seed, i])))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers)


def adam(model, l2=0.0, l1=0.0):
    decayed, plain = optim.param_groups(model, weight_decay=l2)  # weights, then biases (not penalized)
    decayed["l1"] = l1
    return optim.Adam([decayed, plain], lr=1e-3)


METHODS = {  # name: (description, build(seed), optimizer(model), extra fit arguments)
    "none": ("no regularization", lambda s: build(seed=s), adam, {}),
    "L2": ("weight_decay 1e-4", lambda s: build(seed=s), lambda m: adam(m, l2=1e-4), {}),
    "L1": ("l1 2e-5", lambda s: build(seed=s), lambda m: adam(m, l1=2e-5), {}),
    "dropout": ("0.2 input, 0.5 hidden", lambda s: build(dropout=True, seed=s), adam, {}),
    "early stopping": ("val_loss, patience 3", lambda s: build(seed=s), adam,
                       {"callbacks": lambda: [fastnn.train.EarlyStopping("val_loss", patience=3,
                                                                        restore_best_weights=True)]}),
    "augmentation": ("shift 2 px + h-flip", lambda s: build(seed=s), adam,
                     {"augment": lambda: fastnn.augment.Compose([fastnn.augment.RandomShift(2),
                                                                 fastnn.augment.RandomHorizontalFlip()],
                                                                shape=(1, 28, 28))}),
}


def main():
    args = common.parser(__doc__, epochs=20, train_size=10000).parse_args()
    (X, y), (Xv, yv), (Xt, yt) = common.load(args)
    histories, rows = {}, []
    for name, (description, make, make_optimizer, extra) in METHODS.items():
        model = make(args.seed)
        start = time.perf_counter()
        history = fastnn.fit(model, X, y, optimizer=make_optimizer(model), epochs=args.epochs, batch_size=64,
                             validation_data=(Xv, yv), seed=args.seed, verbose=0,
                             **{k: v() for k, v in extra.items()})
        seconds = time.perf_counter() - start
        histories[name] = history
        train_acc, val_acc = common.accuracy(model, X, y), common.accuracy(model, Xv, yv)  # eval mode, final weights
        rows.append({"method": name, "settings": description, "epochs": len(history), "train": train_acc,
                     "val": val_acc, "gap": train_acc - val_acc, "test": common.accuracy(model, Xt, yt),
                     "seconds": seconds})
        print(f"  {name:<15} test accuracy {rows[-1]['test']:.4f} ({seconds:.1f} s)")
    print()
    common.table(rows, [("method", "method", ""), ("settings", "settings", ""), ("epochs", "epochs", "d"),
                        ("train", "train acc", ".4f"), ("val", "val acc", ".4f"), ("gap", "train-val", ".4f"),
                        ("test", "test acc", ".4f"), ("seconds", "seconds", ".1f")])
    common.figure(args, fastnn.plot.curves, histories, ["loss", "accuracy"], what="curves",
                  title=f"Regularization on Fashion-MNIST ({len(X)} training images): solid train, dashed validation")


if __name__ == "__main__":
    main()
