"""SGD, Adam, nonlinear CG, L-BFGS and Newton-CG (Hessian-free) on one problem: softmax regression
784 -> 10 with L2 1e-4 on Fashion-MNIST (the training loss on all images, against wall time).

    PYTHONPATH=python python examples/second_order.py [--samples 20000] [--seconds 20] [--plot out.png]
        [--data DIR|bundled] [--threads N]

The first-order methods train in minibatches of 128 (fit's C++ epoch loop); the others full-batch
(fit with the optimizer: each evaluation over the data runs in C++). Every curve is the full
objective (mean cross-entropy + L2 on the weights, the same for every method) measured after each
epoch or iteration, on the training images only (it compares optimizers, not models: no test set is
used or reported); matplotlib is optional. HessianFree runs CG on exact Hessian-vector products
(fit's full-batch objective: one pass over the data per product, as per evaluation).
"""

import argparse
import time

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.train.callbacks import Callback

L2 = 1e-4


def objective(model, X, y):
    W = model[0].weight.data
    return fastnn.evaluate(model, X, y, batch_size=8192)["loss"] + 0.5 * L2 * float((W.astype(np.float64) ** 2).sum())


def fresh_model():
    model = nn.Sequential(nn.Linear(784, 10))
    model.flat_parameters()[...] = 0
    model[0].bias.weight_decay = False  # every optimizer's weight_decay is then the L2 term of objective()
    return model


def first_order(name, make, X, y, seconds):
    model = fresh_model()
    opt = make(model.parameters())
    curve, start = [(0.0, objective(model, X, y))], time.perf_counter()
    spent = 0.0
    while spent < seconds:
        t0 = time.perf_counter()
        fastnn.fit(model, X, y, optimizer=opt, epochs=1, batch_size=128, verbose=0)
        spent += time.perf_counter() - t0  # the objective's evaluation is not training time
        curve.append((spent, objective(model, X, y)))
    return name, curve


def second_order(name, make, X, y, seconds):
    model = fresh_model()
    opt = make(model.parameters())
    curve = [(0.0, objective(model, X, y))]

    class Trace(Callback):
        def on_iteration(self, iteration, logs):
            elapsed = time.perf_counter() - start
            curve.append((elapsed, logs["loss"]))
            if elapsed > seconds:
                self.fit_state.stop_training = True

    start = time.perf_counter()
    fastnn.fit(model, X, y, optimizer=opt, epochs=1000, verbose=0, callbacks=[Trace()])
    return name, curve


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--plot", default=None, help="write the loss-vs-time plot here (needs matplotlib)")
    ap.add_argument("--data", default=None, help="Fashion-MNIST directory (default: the full set if found, "
                                                 "else the bundled subset); 'bundled' forces the subset")
    ap.add_argument("--threads", type=int, default=None, help="fastnn threads (default: all cores)")
    args = ap.parse_args()
    if args.threads:
        fastnn.set_num_threads(args.threads)
    (X, y), _ = fastnn.datasets.fashion_mnist(path=args.data)
    X, y = X[: args.samples], y[: args.samples].astype(np.int64)
    results = [
        first_order("SGD (lr 0.1, momentum 0.9)", lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=L2), X, y,
                    args.seconds),
        first_order("Adam (lr 1e-3)", lambda p: optim.Adam(p, lr=1e-3, weight_decay=L2), X, y, args.seconds),
        second_order("CG (PR+)", lambda p: optim.ConjugateGradient(p, max_iter=20, weight_decay=L2), X, y, args.seconds),
        second_order("L-BFGS (m=10)", lambda p: optim.LBFGS(p, max_iter=20, history_size=10,
                                                            line_search_fn="strong_wolfe", weight_decay=L2),
                     X, y, args.seconds),
        second_order("Newton-CG (Hessian-free)", lambda p: optim.HessianFree(p, max_iter=5, damping=1e-3,
                                                                             max_cg=50, weight_decay=L2,
                                                                             curvature="hessian"),
                     X, y, args.seconds),
    ]
    print(f"softmax regression, {len(X)} Fashion-MNIST images, L2 {L2}: training loss after ~{args.seconds:g} s")
    for name, curve in results:
        print(f"  {name:28} {curve[-1][1]:.5f}  ({len(curve) - 1} epochs/iterations, {curve[-1][0]:.1f} s)")
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot")
            return
        fig, ax = plt.subplots(figsize=(7, 4.5))
        best = min(c[-1][1] for _, c in results)
        for name, curve in results:
            t, f = zip(*curve)
            ax.semilogy(t, np.maximum(np.array(f) - best + 1e-6, 1e-6), label=name)
        ax.set_xlabel("seconds")
        ax.set_ylabel("training loss - best final loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
