"""Data-parallel training over MPI (issue 13): the same script on every process of an MPI job.

    mpirun -np 2 python train.py          # or: srun -n 2 python train.py under Slurm

    import fastnn, fastnn.distributed as dist
    dist.init()                               # MPI.COMM_WORLD (mpi4py)
    model = build_model()                     # the same on every rank (fit copies rank 0's weights)
    dp = dist.DataParallel(sync_batchnorm=False, timeout=300)
    fastnn.fit(model, X, y, batch_size=64, epochs=5, distributed=dp)     # global batch 64 x ranks
    fastnn.evaluate(model, X_test, y_test, distributed=dp)               # each rank a share

Needs mpi4py (``pip install "fastnn[mpi]"``) and an MPI library; ``import fastnn`` and this
module import without them, and init() or DataParallel() say what is missing. data_parallel.py
describes the scheme, channel.py the deadlines and what happens when a rank fails, and
sync_batchnorm.py the synchronized BatchNorm.
"""

from .broadcast import broadcast_parameters
from .channel import DistributedError
from .data_parallel import DataParallel
from .sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm
from .world import communicator, init, is_initialized, rank, world_size

__all__ = ["init", "is_initialized", "communicator", "rank", "world_size", "broadcast_parameters", "DataParallel",
           "DistributedError", "SyncBatchNorm", "convert_sync_batchnorm"]
