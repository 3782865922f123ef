"""Data-parallel training over MPI (fastnn.distributed): 2 ranks under mpirun, as subprocesses
running worker_script.py, whose per-check RESULT lines these tests read. Skipped without mpirun
or mpi4py."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnn
from tests.isolation import child_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "worker_script.py")

try:
    import mpi4py  # noqa: F401
except ImportError:
    mpi4py = None

needs_mpi = pytest.mark.skipif(shutil.which("mpirun") is None or mpi4py is None,
                               reason="needs mpirun (apt-get install openmpi-bin libopenmpi-dev) and mpi4py")


def launch(scenario, folder, ranks=2, timeout=240):
    """(return code, stdout + stderr, seconds) of the scenario on `ranks` processes (0: no mpirun)."""
    env = dict(child_env(), OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    cmd = [sys.executable, WORKER, scenario, str(folder)]
    if ranks:
        cmd = ["mpirun", "-np", str(ranks), "--oversubscribe"] + cmd
    start = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - start
    written = "".join(pathlib.Path(folder, f).read_text() for f in sorted(os.listdir(folder))
                      if f.startswith("results-"))
    return p.returncode, written + p.stdout + p.stderr, seconds


def results(output):
    """{(rank, name): (status, reason)} of the RESULT lines."""
    out = {}
    for m in re.finditer(r"^RESULT (\d+) (\w+) (ok|FAIL)(.*)$", output, re.M):
        out[(int(m.group(1)), m.group(2))] = (m.group(3), m.group(4))
    return out


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    code, output, _ = launch("main", folder)
    return code, output, results(output), folder


CHECKS = ["world", "threads", "equivalence", "empty_shard", "identical", "dropout", "callbacks", "sync_bn_mlp",
          "sync_bn_cnn", "batch_sizes", "mismatch", "checkpoint"]


@needs_mpi
@pytest.mark.parametrize("name", CHECKS)
def test_main_checks(main_run, name):
    """threads: DataParallel() leaves each rank at most its share of the cores it shares;
    equivalence: 2 ranks x 64 == 1 x 128 (a partial last batch of 53 + 52); empty_shard: a last
    global batch of 1 sample (rank 1's shard empty); identical: bit-identical parameters and logs
    on both ranks after every epoch; dropout: per-rank, reproducible masks; callbacks: EarlyStopping
    stops every rank where one process stops, on the reduced val_loss; sync_bn_*: sync
    BatchNorm == one process's BatchNorm on the global batch; batch_sizes: fit refuses exactly the
    batches that cannot train (a rank's empty shard with sync_batchnorm, a 1-sample shard with local
    BatchNorm), and drop_last lets the rest through; mismatch: broadcast_parameters names
    both counts on both ranks; checkpoint: rank 0 writes, a 2-rank resume is bit-identical."""
    code, output, found, _ = main_run
    for rank in (0, 1):
        assert (rank, name) in found, f"no result for rank {rank} (exit code {code}):\n{output[-4000:]}"
        status, reason = found[(rank, name)]
        assert status == "ok", f"rank {rank}: {reason}"


@needs_mpi
def test_only_rank_0_prints(main_run):
    code, output, _, _ = main_run
    assert code == 0, output[-4000:]
    assert len(re.findall(r"^epoch 1/2: ", output, re.M)) == 1, output[-4000:]  # checkpoint's verbose=2 fit


@needs_mpi
def test_checkpoint_resumes_on_one_process(main_run):
    _, _, found, folder = main_run
    assert found.get((0, "checkpoint"), ("missing",))[0] == "ok"
    code, output, _ = launch("resume1", folder, ranks=0)
    assert results(output).get((0, "resume1"), ("missing", output[-3000:])) == ("ok", ""), output[-3000:]


@needs_mpi
def test_a_raising_rank_stops_every_rank(tmp_path):
    """Rank 1 raises in a Python-written layer mid-epoch: rank 0 raises DistributedError naming rank
    1 and its error at once (no time-out: the failure flag rides on the batch's sync)."""
    code, output, seconds = launch("raising", tmp_path)
    lines = dict(re.findall(r"^RAISED (\d) (.*)$", output, re.M))
    assert set(lines) == {"0", "1"}, output[-3000:]
    assert "ValueError" in lines["1"] and "boom at call 6" in lines["1"], lines
    assert "DistributedError" in lines["0"] and "rank 1" in lines["0"] and "boom at call 6" in lines["0"], lines
    assert float(lines["0"].split()[0]) < 4, lines  # well inside the 4 s timeout
    assert code == 0, output[-3000:]


@needs_mpi
def test_a_stalled_rank_times_out(tmp_path):
    """Rank 1 stalls for 30 s: rank 0 raises a time-out DistributedError after its 4 s timeout, and
    its exit aborts the job (MPI_Abort) instead of waiting for rank 1."""
    code, output, seconds = launch("stuck", tmp_path)
    lines = dict(re.findall(r"^RAISED (\d) (.*)$", output, re.M))
    assert "0" in lines and "DistributedError" in lines["0"] and "timed out" in lines["0"], output[-3000:]
    assert 3.5 < float(lines["0"].split()[0]) < 10, lines
    assert code != 0 and seconds < 25, (code, seconds)


def test_import_without_mpi():
    """fastnn and fastnn.distributed import without mpi4py; DataParallel says what is missing."""
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import fastnn, fastnn.distributed as d\n"
            "try:\n    d.DataParallel()\nexcept ImportError as e:\n    print('IMPORT', e)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=child_env())
    assert p.returncode == 0, p.stderr
    assert "IMPORT fastnn.distributed needs mpi4py" in p.stdout, p.stdout + p.stderr


def test_local_plan_is_a_no_op():
    """distributed=None trains as before; anything else but a DataParallel is a TypeError."""
    X = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    y = np.arange(40) % 3
    with pytest.raises(TypeError, match="distributed must be a fastnn.distributed.DataParallel"):
        fastnn.fit(fastnn.nn.Linear(4, 3), X, y, distributed="mpi")
    with pytest.raises(TypeError, match="distributed must be"):
        fastnn.evaluate(fastnn.nn.Linear(4, 3), X, y, distributed=object())


def _small_fit_args():
    from fastnn._config import _C

    fastnn.manual_seed(0)
    model = fastnn.nn.Sequential(fastnn.nn.Linear(4, 3))
    X = np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32)
    y = np.arange(10) % 3
    return _C, model, X, y


def test_shard_arguments_are_checked():
    _C, model, X, y = _small_fit_args()
    args = (model._layer, X, y, "cross_entropy", "mean", model.flat_grad(), [], 4, True, 0, 0, 0)
    with pytest.raises(ValueError, match="needs the grad_hook"):
        _C.train_epoch(*args, shard=0, shards=2)
    with pytest.raises(ValueError, match=r"shard must be in \[0, shards\)"):
        _C.train_epoch(*args, shard=2, shards=2, grad_hook=lambda *a: 0.0)


def test_grad_hook_sees_each_shard_and_decides_the_step():
    """The C++ loop calls the hook once per global batch, after backward, with this shard's count
    (global batch 4 x 2 shards = 8 samples; shard 1 of the last global batch of 2 has 1); the
    gradient it leaves is what the optimizer steps on; a non-finite return stops the epoch."""
    _C, model, X, y = _small_fit_args()
    calls = []

    def hook(batch, count, loss, correct, top_k, abs_error, sq_error):
        calls.append((batch, count, float(np.abs(model.flat_grad()).sum()) > 0))
        model.flat_grad()[...] = 0  # no step: the parameters must not move
        return loss
    before = model.flat_parameters().copy()
    opt = fastnn.optim.SGD(model.parameters(), lr=1.0)
    _C.train_epoch(model._layer, X, y, "cross_entropy", "mean", model.flat_grad(), opt._deferred_steps(), 4, False,
                   0, 0, 0, shard=1, shards=2, grad_hook=hook)
    assert calls == [(0, 4, True), (1, 1, True)], calls
    np.testing.assert_array_equal(model.flat_parameters(), before)
    stats = _C.train_epoch(model._layer, X, y, "cross_entropy", "mean", model.flat_grad(), opt._deferred_steps(), 4,
                           False, 0, 0, 0, shard=0, shards=2, grad_hook=lambda *a: float("nan"))
    assert stats["nonfinite_batch"] == 0 and stats["batches"] == 0
    np.testing.assert_array_equal(model.flat_parameters(), before)


def test_ranks_that_share_cores_split_them():
    """(node, affinity mask, CPUs in it) per rank: ranks with one mask on one node share its CPUs;
    a rank bound to its own cores keeps up to their number; the count is never raised."""
    from fastnn.distributed.threads import fair_share

    bound = [(1, 10, 1), (1, 11, 1)]  # mpirun -np 2 on 2 cores: a core each
    assert [fair_share(bound, r, t) for r, t in ((0, 1), (1, 2))] == [1, 1]
    unbound = [(1, 12, 2), (1, 12, 2)]  # mpirun --bind-to none: both see both cores
    assert [fair_share(unbound, r, 2) for r in (0, 1)] == [1, 1]
    assert fair_share([(1, 12, 2)], 0, 2) == 2  # one rank keeps its threads
    assert fair_share([(1, 12, 2)], 0, 1) == 1  # never raised
    assert fair_share([(1, 12, 2), (2, 12, 2)], 0, 2) == 2  # one rank on each of two nodes
    assert [fair_share([(1, 12, 8)] * 3, r, 8) for r in range(3)] == [2, 2, 2]
    assert fair_share([(1, 12, 2)] * 3, 2, 4) == 1  # more ranks than cores: still one thread


def test_data_parallel_checks_threads():
    from fastnn.distributed import DataParallel

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be None or an int >= 1"):
            DataParallel(threads=bad)


def test_batch_counts_are_the_shards_of_the_c_loop():
    """(global batch, each process's shard) of an epoch, as net/train.h cuts them: the first
    count % processes shards one sample longer; drop_last drops the partial last batch."""
    from fastnn.train.parallel import SingleProcess

    two, three = SingleProcess(), SingleProcess()
    two.size, three.size = 2, 3
    assert two.batch_counts(257, 64) == [(128, (64, 64)), (1, (1, 0))]
    assert two.batch_counts(257, 64, drop_last=True) == [(128, (64, 64))]
    assert two.batch_counts(100, 64) == [(100, (50, 50))]
    assert three.batch_counts(10, 2) == [(6, (2, 2, 2)), (4, (2, 1, 1))]
    assert SingleProcess().batch_counts(33, 32) == [(32, (32,)), (1, (1,))]


def test_batchnorm_check_counts_each_process_shard():
    """Local BatchNorm on 2 processes: a shard of 1 sample is refused (130 by 64 x 2: a last global
    batch of 1 + 1), a last global batch of 33 + 32 is not (193 by 64 x 2; one process's 193 by 64
    is); the suggested batch size has no 1-sample shard."""
    import re

    from fastnn.train.fit import _check_batch_statistics
    from fastnn.train.parallel import SingleProcess

    two = SingleProcess()
    two.size = 2
    fastnn.manual_seed(0)
    model = fastnn.nn.Sequential(fastnn.nn.Linear(4, 6), fastnn.nn.BatchNorm1d(6), fastnn.nn.Linear(6, 3))
    fastnn.predict(model, np.zeros((2, 4), np.float32))  # the BatchNorm's input shape
    _check_batch_statistics(model, 193, 64, False, two)
    _check_batch_statistics(model, 130, 64, True, two)
    with pytest.raises(ValueError, match="by 64 x 2 processes gives a process 1 sample") as e:
        _check_batch_statistics(model, 130, 64, False, two)
    good = int(re.search(r"batch_size=(\d+) or drop_last=True", str(e.value)).group(1))
    _check_batch_statistics(model, 130, good, False, two)
    with pytest.raises(ValueError, match="the last batch of 193 samples by 64 has 1 sample"):
        _check_batch_statistics(model, 193, 64)
