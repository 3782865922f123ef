"""Ensemble accuracy against its members on Fashion-MNIST (the bundled 5k/1k subset when the full
set is missing): soft and hard voting of 5 MLPs that differ in seed, bagging of 5, stacking of 3,
and a snapshot ensemble of one cyclic-lr run; each beside its best and mean member.

    PYTHONPATH=python:. python bench/bench_ensemble.py [--epochs 5] [--members 5]
"""

import argparse
import time

import numpy as np

import fastnn
from fastnn import ensemble, nn, tune


def mlp():
    return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def seeded(n):
    out = []
    for s in range(n):
        fastnn.manual_seed(1000 + s)
        out.append(mlp())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--members", type=int, default=5)
    args = parser.parse_args()
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist()
    print(f"data: {fastnn.datasets.fashion_mnist_source()} ({len(X)} train, {len(Xt)} test)")
    fit = dict(epochs=args.epochs, batch_size=64)
    pool = tune.LocalPool(n_workers=2)
    rows = []
    try:
        for name, make in [
            ("voting (soft)", lambda: ensemble.VotingClassifier(seeded(args.members)).fit(X, y, executor=pool, **fit)),
            ("bagging", lambda: ensemble.Bagging(mlp, n_estimators=args.members).fit(X, y, executor=pool, **fit)),
            ("stacking (3, cv 3)", lambda: ensemble.Stacking(seeded(3), cv=3).fit(X, y, executor=pool, **fit)),
            ("snapshot (5 x 2 ep)", lambda: ensemble.SnapshotEnsemble(seeded(1)[0], n_snapshots=5, epochs_per_cycle=2,
                                                                     lr_max=0.1).fit(X, y, batch_size=64)),
        ]:
            start = time.perf_counter()
            ens = make()
            seconds = time.perf_counter() - start
            acc = ens.score(Xt, yt)
            members = ens.member_scores(Xt, yt) if hasattr(ens, "member_scores") else \
                [float(np.mean(fastnn.predict(m, Xt).argmax(1) == yt)) for m in ens.members_]
            rows.append((name, acc, max(members), float(np.mean(members)), seconds))
            if name.startswith("voting"):
                hard = ensemble.VotingClassifier(ens.members_, voting="hard", prefit=True)
                rows.append(("voting (hard)", hard.score(Xt, yt), max(members), float(np.mean(members)), 0.0))
    finally:
        pool.shutdown()
    print(f"{'ensemble':>20} {'accuracy':>9} {'best member':>12} {'mean member':>12} {'vs best':>8} {'fit s':>6}")
    for name, acc, best, mean, seconds in rows:
        print(f"{name:>20} {acc:9.4f} {best:12.4f} {mean:12.4f} {acc - best:+8.4f} {seconds:6.1f}")


if __name__ == "__main__":
    main()
