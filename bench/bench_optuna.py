"""What the Optuna bridge costs: one trial through ``tune.optuna_objective`` (suggest, build, fit
with a per-epoch report and should_prune() check, keep the model's bytes) against the same training as a
plain ``fastnn.fit`` (same seed, same initial weights), paired and alternating in one process.

    PYTHONPATH=python:. python bench/bench_optuna.py [--epochs 5] [--repeats 7] [--train-size 20000]

Both runs train the MLP 784-256-10 with Adam (lr 1e-3, batch 128) and score the same validation
split; the benchmark checks that they give the same validation accuracies epoch by epoch, then
prints the median wall time of each and their ratio (objective / fit: 1.00 means no overhead).
"""

import argparse
import statistics
import time

import numpy as np

import fastnn
from fastnn import nn, tune


def build(config):
    return nn.Sequential(nn.Linear(784, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], 10))


def main():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-size", type=int, default=20000)
    args = parser.parse_args()
    (X, y), _ = fastnn.datasets.fashion_mnist()
    X, y = X[:args.train_size], y[:args.train_size]
    space = {"hidden": 256, "lr": 1e-3}
    objective = tune.optuna_objective(build, space, X, y, epochs=args.epochs, batch_size=128, seed=0)
    Xtr, ytr, Xv, yv = objective.data
    print(f"data: {fastnn.datasets.fashion_mnist_source()}: {len(Xtr)} train / {len(Xv)} validation images; "
          f"{fastnn.get_num_threads()} threads, {args.epochs} epochs per run")
    study = optuna.create_study(direction=objective.direction, pruner=optuna.pruners.NopPruner())  # every trial runs in full

    def plain_fit(number):  # what the objective does for trial `number`, without Optuna
        seed = int(np.random.default_rng([0, number]).integers(2**63))
        with fastnn.random.seeded(seed):
            model = build(space)
        return fastnn.fit(model, Xtr, ytr, optimizer=fastnn.optim.Adam(model.parameters(), lr=1e-3),
                          epochs=args.epochs, batch_size=128, validation_data=(Xv, yv), seed=seed, verbose=0)

    times = {"objective": [], "fit": []}
    for r in range(args.repeats):
        for name in (("objective", "fit") if r % 2 == 0 else ("fit", "objective")):
            start = time.perf_counter()
            if name == "objective":
                trial = study.ask()
                study.tell(trial, objective(trial))
            else:
                plain_fit(r)
            times[name].append(time.perf_counter() - start)
    last = study.trials[-1]
    assert [last.intermediate_values[e + 1] for e in range(args.epochs)] == plain_fit(last.number)["val_accuracy"], \
        "the objective trained differently from fit"
    fit_s, obj_s = statistics.median(times["fit"]), statistics.median(times["objective"])
    print(f"median of {args.repeats}: fit {fit_s:.3f} s, optuna objective {obj_s:.3f} s: "
          f"ratio objective/fit {obj_s / fit_s:.3f} (validation accuracies identical epoch by epoch)")


if __name__ == "__main__":
    main()
