"""The Dask path: a real LocalCluster with worker processes gives the local pool's results."""

import numpy as np
import pytest

from fastnn import tune

from . import objectives as obj

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=50)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_dask_cluster_gives_the_local_pool_results_for_the_same_seed(client):
    X, y = obj.toy_data(160)
    space = {"lr": tune.loguniform(1e-3, 3e-2), "hidden": tune.choice([4, 8])}
    kwargs = dict(n_trials=3, epochs=2, min_epochs=1, eta=2, batch_size=16, seed=11)
    pool = tune.LocalPool(n_workers=2)
    try:
        local = tune.random_search(obj.mlp, space, X, y, executor=pool, **kwargs)
    finally:
        pool.shutdown()
    remote = tune.random_search(obj.mlp, space, X, y, executor=client.get_executor(), threads_per_trial=1, **kwargs)
    assert [t["config"] for t in remote.trials] == [t["config"] for t in local.trials]
    assert [t["budget"] for t in remote.trials] == [t["budget"] for t in local.trials]
    assert [t["score"] for t in remote.trials] == [t["score"] for t in local.trials]
    np.testing.assert_array_equal(remote.best_model[0].weight.data, local.best_model[0].weight.data)
    ran_on = client.run(lambda: __import__("os").getpid())
    assert len(ran_on) == 2  # two worker processes, none of them this one
