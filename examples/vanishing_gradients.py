"""Vanishing gradients on Fashion-MNIST (seed 002; Glorot & Bengio 2010): a deep MLP with sigmoid
units and N(0, 1) initial weights, and with small weights U(±1/√fan_in) (Glorot & Bengio's
"standard" initialization, PyTorch's default), against He initialization with ReLU and with ELU.

What each shows (6 hidden layers of 100, one batch of the untrained network):
  sigmoid + U(±1/√n): σ' <= 1/4 in every layer and weights too small to make up for it: ‖∂L/∂W‖
      falls by orders of magnitude from the output side to the input side (the vanishing gradient).
  sigmoid + N(0, 1): the pre-activations have a variance of ~fan_in·E[x²], so about half of the
      sigmoid outputs saturate at 0 or 1 where the slope is ~0 (seed 002's saturation); the large
      weights make up for the small slopes, so the gradient norm falls only a few times toward the
      input, but the saturated units learn slowly.
  He + ReLU / He + ELU: σ = √(2/fan_in) keeps the variance of the outputs from layer to layer; the
      gradient norms stay within a small factor of each other, and the networks train fastest.

fastnn.train.layer_statistics runs one batch through each untrained network layer by layer; the
script prints ‖∂L/∂W‖ of every layer (input side first), the ratio of the first layer's to the
last layer's, the fraction of saturated sigmoid outputs, then trains each network for --epochs
(SGD, gradient norm clipped at 1) and prints its accuracy. --plot draws the histograms of the activations and of the
back-propagated gradients, the gradient norms per layer and the training curves.

    python examples/vanishing_gradients.py                    # 6 hidden layers of 100, 3 epochs: < 1 min
    python examples/vanishing_gradients.py --depth 10 --plot vanishing.png
"""

import time

import numpy as np

import fastnn
from fastnn import nn

import common


def standard_normal(weight, generator=None):
    return nn.init.normal_(weight, 0.0, 1.0, generator=generator)  # the naive N(0, 1) of the seed


def he_normal(weight, generator=None):
    return nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)


CONFIGS = {  # name: (activation module, initializer; None: nn.Linear's default U(±1/√fan_in))
    "sigmoid + N(0,1)": (nn.Sigmoid, standard_normal),
    "sigmoid + U(±1/√n)": (nn.Sigmoid, None),
    "He + ReLU": (nn.ReLU, he_normal),
    "He + ELU": (nn.ELU, he_normal),
}


def build(activation, init, depth, width, seed):
    layers, n_in = [], 784
    for i in range(depth):
        layers += [nn.Linear(n_in, width, init=init, generator=np.random.default_rng([seed, i])), activation()]
        n_in = width
    layers.append(nn.Linear(n_in, 10, init=init, generator=np.random.default_rng([seed, depth])))
    return nn.Sequential(*layers)


def plot(stats, histories, path, title):
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(stats), figsize=(5 * len(stats), 11), squeeze=False)  # one column per config
    fastnn.plot.activation_histograms(stats, axes=list(axes[0]))
    fastnn.plot.gradient_histograms(stats, axes=list(axes[1]))
    fastnn.plot.gradient_norms(stats, ax=axes[2][0])
    axes[2][0].set_title("gradient norm per layer, untrained")
    fastnn.plot.curves(histories, ["loss", "accuracy"], axes=list(axes[2][1:3]))
    for ax in axes[2][3:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    p = common.parser(__doc__, epochs=3, train_size=10000)
    p.add_argument("--depth", type=int, default=6, help="hidden layers (default 6)")
    p.add_argument("--width", type=int, default=100, help="units per hidden layer (default 100)")
    p.add_argument("--batch", type=int, default=512, help="images in the batch that layer_statistics runs (default 512)")
    args = p.parse_args()
    (X, y), (Xv, yv), (Xt, yt) = common.load(args)
    batch = slice(0, min(args.batch, len(X)))
    stats, histories, rows = {}, {}, []
    for name, (activation, init) in CONFIGS.items():
        model = build(activation, init, args.depth, args.width, args.seed)
        s = fastnn.train.layer_statistics(model, X[batch], y[batch], seed=args.seed)
        stats[name] = s
        norms = [r["weight_grad_norm"] for r in s if r["weight_grad_norm"] is not None]
        hidden = [r for r in s if r["activation"]]
        saturated = (np.mean([np.mean((r["samples"] < 0.01) | (r["samples"] > 0.99)) for r in hidden])
                     if activation is nn.Sigmoid else None)
        start = time.perf_counter()
        # plain SGD shows the gradients' scale as it is (Adam would rescale it away); clipping the norm at 1
        # keeps one steep minibatch from undoing a deep unnormalized network (the exploding side)
        histories[name] = fastnn.fit(model, X, y, optimizer="sgd", lr=0.05, clip_grad_norm=1.0, epochs=args.epochs,
                                     batch_size=64, validation_data=(Xv, yv), seed=args.seed, verbose=0)
        rows.append({"config": name, "norms": norms, "ratio": norms[0] / norms[-1] if norms[-1] else float("inf"),
                     "saturated": saturated, "val": histories[name]["val_accuracy"][-1],
                     "test": common.accuracy(model, Xt, yt), "seconds": time.perf_counter() - start})
    print(f"\n‖∂L/∂W‖ per layer of the untrained networks (one batch of {batch.stop}; layer 1 = input side)")
    common.table([{"config": r["config"], **{f"L{i + 1}": n for i, n in enumerate(r["norms"])}} for r in rows],
                 [("config", "config", "")] + [(f"L{i + 1}", f"L{i + 1}", ".2e") for i in range(len(rows[0]["norms"]))])
    print(f"\nafter {args.epochs} epochs of SGD (lr 0.05, batch 64, gradient norm clipped at 1)")
    common.table(rows, [("config", "config", ""), ("ratio", "‖∂W1‖/‖∂W_last‖", ".2e"),
                        ("saturated", "saturated sigmoids", ".1%"), ("val", "val acc", ".4f"),
                        ("test", "test acc", ".4f"), ("seconds", "train s", ".1f")])
    if args.plot:
        plot(stats, histories, args.plot, f"Vanishing gradients: {args.depth} hidden layers of {args.width}")
        print(f"figure written to {args.plot}")


if __name__ == "__main__":
    main()
