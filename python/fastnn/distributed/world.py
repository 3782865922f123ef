"""The communicator fastnn.distributed uses by default: init(), rank(), world_size()."""

import os
import sys

_default = None  # the communicator init() set up


def _mpi():
    if "mpi4py.MPI" not in sys.modules:
        # Open MPI's blocking collectives (the gradient allreduce) busy-poll while they wait for the
        # other ranks; told to yield the core between polls, a rank waiting for a slower one leaves
        # its core to whatever else runs there (the other rank, its threads, other jobs). Paired
        # 2-rank runs at load 13: mlp-l 0.48-0.50x, the CNN 0.83-0.95x the epoch time of spinning
        # (bench_distributed.py, docs/distributed.md). Only a default, read by MPI_Init (the import
        # below): set OMPI_MCA_mpi_yield_when_idle=0 to spin; other MPI libraries ignore it.
        os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("fastnn.distributed needs mpi4py and an MPI library: pip install \"fastnn[mpi]\" "
                          "(and e.g. apt-get install openmpi-bin libopenmpi-dev)") from e
    return MPI


def init(comm=None):
    """Sets up data-parallel training on `comm` (an mpi4py communicator; default MPI.COMM_WORLD, which
    mpi4py initializes on import: under mpirun/srun, every process of the job). Returns the communicator."""
    global _default
    MPI = _mpi()
    if comm is None:
        comm = MPI.COMM_WORLD
    if not isinstance(comm, MPI.Comm) or comm == MPI.COMM_NULL:
        raise TypeError(f"init: comm must be an mpi4py communicator, got {comm!r}")
    if not comm.Is_intra():
        raise ValueError("init: comm must be an intra-communicator")
    _default = comm
    return comm


def is_initialized():
    return _default is not None


def communicator():
    """The communicator of init() (init() with MPI.COMM_WORLD when it was not called)."""
    return _default if _default is not None else init()


def rank():
    """This process's rank in the communicator (0 .. world_size() - 1)."""
    return communicator().Get_rank()


def world_size():
    """The number of processes in the communicator."""
    return communicator().Get_size()


def channel(comm, timeout):
    """A Channel on `comm` (None: the default communicator)."""
    from .channel import Channel

    if comm is None:
        comm = communicator()
    else:
        MPI = _mpi()
        if not isinstance(comm, MPI.Comm) or comm == MPI.COMM_NULL:
            raise TypeError(f"DataParallel: comm must be an mpi4py communicator, got {comm!r}")
    return Channel(comm, timeout)
