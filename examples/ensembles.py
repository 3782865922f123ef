"""Ensembles against their members on Fashion-MNIST (seed 002): hard voting and probability
averaging (soft voting) of MLPs that differ only in their seed, bagging (each member on its own
bootstrap sample, with the out-of-bag score) and a snapshot ensemble (one run with a cyclic cosine
learning rate, a member at the end of each cycle).

Members train in parallel on fastnn's local process pool (one worker per core, one thread each).
Prints, for each ensemble, its members' mean and best test accuracy beside the ensemble's and, with
--plot, the ensemble-versus-members chart.

    python examples/ensembles.py                            # 5 members, 10000 images, 8 epochs: ~1 min on 2 cores
    python examples/ensembles.py --members 7 --train-size 0 --plot ensembles.png
"""

import time

import fastnn
from fastnn import ensemble, nn

import common


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def main():
    p = common.parser(__doc__, epochs=8, train_size=10000, pool=True)
    p.add_argument("--members", type=int, default=5, help="members per ensemble (default 5)")
    args = p.parse_args()
    (X, y), (Xv, yv), (Xt, yt) = common.load(args)  # the validation split is not used: nothing is selected
    with common.executor(args) as executor:
        run_ensembles(args, executor, X, y, Xt, yt)


def run_ensembles(args, executor, X, y, Xt, yt):
    fit = {"epochs": args.epochs, "batch_size": 64, "optimizer": "adam", "lr": 1e-3}
    ensembles = {}

    def run(name, make):
        start = time.perf_counter()
        ensembles[name] = (make(), time.perf_counter() - start)
        print(f"  {name:<10} trained in {ensembles[name][1]:.1f} s")

    fastnn.manual_seed(args.seed)
    models = [mlp() for _ in range(args.members)]  # initial weights differ: drawn one after the other
    # the same trained members vote (labels) and average (probabilities)
    run("voting", lambda: ensemble.VotingClassifier(models, voting="hard").fit(X, y, seed=args.seed, executor=executor,
                                                                               **fit))
    voting = ensembles["voting"][0]
    averaging = ensemble.VotingClassifier(voting.members_, voting="soft", prefit=True)
    ensembles["averaging"] = (averaging, ensembles["voting"][1])
    run("bagging", lambda: ensemble.Bagging(mlp, n_estimators=args.members).fit(X, y, seed=args.seed,
                                                                                executor=executor, **fit))
    cycle = max(1, args.epochs // 2)  # one run of members·cycle epochs with a restart every cycle
    run("snapshot", lambda: ensemble.SnapshotEnsemble(mlp(), n_snapshots=args.members, epochs_per_cycle=cycle,
                                                      lr_max=3e-3, optimizer="adam")
        .fit(X, y, seed=args.seed, batch_size=64))

    rows, scores = [], {}
    for name, (ens, seconds) in ensembles.items():
        members = ens.member_scores(Xt, yt)
        score = ens.score(Xt, yt)
        scores[name] = (members, score)
        rows.append({"ensemble": name, "members": len(members), "mean": sum(members) / len(members),
                     "best": max(members), "score": score, "gain": score - sum(members) / len(members),
                     "oob": getattr(ens, "oob_score_", None), "seconds": seconds})
    print()
    common.table(rows, [("ensemble", "ensemble", ""), ("members", "members", "d"), ("mean", "mean member", ".4f"),
                        ("best", "best member", ".4f"), ("score", "ensemble", ".4f"), ("gain", "gain vs mean", "+.4f"),
                        ("oob", "OOB score", ".4f"), ("seconds", "train s", ".1f")])
    print("(test accuracy; averaging is the voting members' probabilities averaged: no extra training)")
    common.figure(args, fastnn.plot.ensemble_scores, scores, what="chart",
                  title=f"Ensembles vs their members: Fashion-MNIST test accuracy ({len(X)} training images)")


if __name__ == "__main__":
    main()
