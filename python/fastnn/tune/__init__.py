"""Hyperparameter search: spaces, grid / random / coarse-to-fine search with successive halving,
run on a local process pool (default), in this process, or on any concurrent.futures.Executor
(a Dask cluster: ``Client(...).get_executor()``, extra ``fastnn[dask]``).

    space = {"lr": tune.loguniform(1e-4, 1e-1), "hidden": tune.choice([32, 64, 128])}
    result = tune.random_search(build_model, space, X, y, n_trials=16, epochs=9, min_epochs=1)
    result.table, result.best_config, result.best_model, result.summary()

On a Dask cluster (``pip install 'fastnn[dask]'``), any machine count:

    client = dask.distributed.Client(dask.distributed.LocalCluster(n_workers=2, threads_per_worker=1))
    result = tune.random_search(build_model, space, X, y, executor=client.get_executor(), threads_per_trial=1)

gives the local pool's results for the same seed. Models travel as fastnn model bytes, data as
NumPy arrays; a worker lost mid-trial is retried (`retries=`) and listed in ``result.failures``.

With Optuna (``pip install optuna``): ``study.optimize(tune.optuna_objective(build_model, space, X, y),
n_trials=30)`` samples the same spaces with Optuna's sampler and prunes with its pruner, epoch by epoch.

Scripts that use the process pool need the usual ``if __name__ == "__main__":`` guard (workers
are spawned, and re-import the main module).
"""

from .executors import LocalPool, WorkerDied, default_executor, run_tasks
from .optuna import OptunaObjective, optuna_objective, optuna_suggest
from .search import SearchResult, coarse_to_fine, grid_search, random_search
from .spaces import Space, choice, grid, loguniform, narrow, quniform, randint, sample, uniform

__all__ = ["LocalPool", "OptunaObjective", "SearchResult", "Space", "WorkerDied", "choice", "coarse_to_fine",
           "default_executor", "grid", "grid_search", "loguniform", "narrow", "optuna_objective", "optuna_suggest",
           "quniform", "randint", "random_search", "run_tasks", "sample", "uniform"]
