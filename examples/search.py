"""Hyperparameter search on Fashion-MNIST (seed 002): grid search, random search and
coarse-to-fine search of an MLP's learning rate (log scale), width and dropout, on fastnn's local
process pool (one trial per core).

A grid of q points on each of m hyperparameters costs q^m trials; random search spends the same
budget trying as many distinct values of every hyperparameter as it has trials, which is why it is
the one mostly used (Bergstra & Bengio 2012). Coarse-to-fine runs a random search, narrows the
space around the best trials and searches again. Trials are scored by their validation accuracy
(a split of the training images); the best model of each search is then scored once on the test
set. Prints one row per search with its cost beside the q^m of a grid as fine, and with --plot the
scores of every trial against each hyperparameter.

    python examples/search.py                               # 27 + 16 + 16 trials on 8000 images: ~1-2 min
    python examples/search.py --trials 32 --min-epochs 1 --plot search.png    # with successive halving
"""

import time

import fastnn
from fastnn import nn, tune

import common

SPACE = {"lr": tune.loguniform(1e-4, 3e-1), "hidden": tune.choice([32, 128, 512]), "dropout": tune.uniform(0.0, 0.6)}


def build_model(config):
    """784-hidden-10 with dropout; module-level so that the pool's worker processes import it."""
    h = config["hidden"]
    return nn.Sequential(nn.Linear(784, h), nn.ReLU(), nn.Dropout(config["dropout"]), nn.Linear(h, 10))


def main():
    p = common.parser(__doc__, epochs=5, train_size=8000, pool=True)
    p.add_argument("--trials", type=int, default=16, help="trials of the random search; coarse-to-fine runs "
                                                           "2 rounds of half as many (default 16)")
    p.add_argument("--grid-points", type=int, default=3, help="grid points per hyperparameter: q^3 trials (default 3)")
    p.add_argument("--min-epochs", type=int, default=None,
                   help="successive halving: every trial runs this many epochs, the best third goes on")
    args = p.parse_args()
    (X, y), (Xv, yv), (Xt, yt) = common.load(args)
    with common.executor(args) as executor:
        run_searches(args, executor, X, y, Xv, yv, Xt, yt)


def run_searches(args, executor, X, y, Xv, yv, Xt, yt):
    common_args = dict(epochs=args.epochs, min_epochs=args.min_epochs, seed=args.seed, validation_data=(Xv, yv),
                       executor=executor, batch_size=64)
    searches = {
        "grid": lambda: tune.grid_search(build_model, SPACE, X, y, points=args.grid_points, **common_args),
        "random": lambda: tune.random_search(build_model, SPACE, X, y, n_trials=args.trials, **common_args),
        "coarse_to_fine": lambda: tune.coarse_to_fine(build_model, SPACE, X, y, rounds=2,
                                                      n_trials=max(1, args.trials // 2), top_k=3, **common_args),
    }
    results, rows = {}, []
    for name, run in searches.items():
        start = time.perf_counter()
        r = run()
        seconds = time.perf_counter() - start
        results[name] = r
        cost = r.cost
        best = r.best_config
        rows.append({"search": name, "trials": cost["trials"], "epochs": cost["epochs"], "val": r.best_score,
                     "test": common.accuracy(r.best_model, Xt, yt), "lr": best["lr"], "hidden": best["hidden"],
                     "dropout": best["dropout"], "grid": f"{cost['grid_trials']} ({cost['grid_points']}^{cost['dimensions']})",
                     "seconds": seconds})
        print(f"  {name:<15} {cost['trials']} trials in {seconds:.1f} s: best val accuracy {r.best_score:.4f}")
    print()
    common.table(rows, [("search", "search", ""), ("trials", "trials", "d"), ("epochs", "epochs", "d"),
                        ("grid", "grid as fine: q^m", ""), ("val", "best val", ".4f"), ("test", "its test", ".4f"),
                        ("lr", "lr", ".2e"), ("hidden", "hidden", "d"), ("dropout", "dropout", ".2f"),
                        ("seconds", "seconds", ".1f")])
    print("(a grid that tried as many values of each hyperparameter as the search did would cost q^m trials;"
          " 'hidden' has only 3 values)")
    c2f = results["coarse_to_fine"]
    rounds = [max((t["score"] for t in c2f.trials if t["round"] == k and t["status"] == "ok"), default=float("nan"))
              for k in range(2)]
    narrowed = ", ".join(f"{k} {v.options}" if isinstance(v, tune.choice) else f"{k} [{v.low:.3g}, {v.high:.3g}]"
                         for k, v in c2f.spaces[1].items())
    print(f"coarse_to_fine: round 1 drew the random search's first {len(c2f.trials) // 2} configs (the same seed), "
          f"best {rounds[0]:.4f}; round 2 searched {narrowed}: best {rounds[1]:.4f}")
    common.figure(args, fastnn.plot.search_scores, results, what="scatter",
                  title=f"Validation accuracy of every trial ({len(X)} training images, {args.epochs} epochs)")


if __name__ == "__main__":
    main()
