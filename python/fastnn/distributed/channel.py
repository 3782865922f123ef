"""The collectives of data-parallel training, each with a deadline, and how a failure on one rank
stops all of them.

Every operation of fastnn.distributed starts with a *sync*: one allreduce (sum) of a (ranks, 8)
float64 table in which each rank fills its own row, so that every rank learns every rank's row
(an allgather that a failing rank can join without knowing which operation the others are in).
Column 0 is a failure flag. The other collectives (the gradient allreduce, broadcasts, predict's
gather) only ever run right after a sync that every rank passed, with no user code in between:
every rank has then provably reached them, so they are plain blocking calls (MPI_Allreduce, which
runs MPI's tuned algorithms; a rank that dies right there is ended with the job by mpirun/srun).
So when a rank raises (a Python-written layer, bad data, Ctrl-C), it joins the sync that the
others are in or will reach next with its flag set, the ranks exchange the error message, and
every rank raises DistributedError naming the failed rank and its error, instead of hanging.

Each sync is non-blocking (MPI_Iallreduce), polled with MPI_Test until a deadline: a rank that is
stuck or gone makes the others raise DistributedError after `timeout` seconds. A timed-out
collective cannot be cancelled (MPI has no cancel for collectives), so the communicator
is then unusable: fastnn registers an exit-time MPI_Abort that ends the whole job (also the stuck
rank) instead of letting MPI_Finalize wait for it.

MPI's error handler: fastnn keeps the one mpi4py installs on its communicators, MPI_ERRORS_RETURN
(``mpi4py.rc.errors = "exception"``, the default), so an MPI error is a Python ``MPI.Exception``,
which fastnn re-raises as DistributedError naming the operation. With MPI_ERRORS_ARE_FATAL (a
communicator made elsewhere) an MPI error aborts the job at once, which also stops every rank.
"""

import atexit
import os
import time

import numpy as np

SYNC_WIDTH = 8  # values per rank in a sync: the failure flag and 7 payload values
_MESSAGE_BYTES = 2048  # an error message as exchanged between ranks (UTF-8, truncated)
# Polling a sync: MPI_Test in a tight loop for 2 ms (a peer a little behind), then yielding the core
# between tests up to 0.1 s (other ranks on an oversubscribed machine run), then 1 ms sleeps (a long
# wait: rank 0 writing a checkpoint, a stuck peer).
_SPIN_SECONDS, _YIELD_SECONDS, _POLL_SLEEP = 2e-3, 0.1, 1e-3


class DistributedError(RuntimeError):
    """An operation across ranks failed: another rank raised, a collective timed out, or MPI failed.

    Attributes:
        failed_ranks: the ranks that raised (empty for a time-out or an MPI error).
        timed_out: True when a collective did not complete within the timeout (the communicator is
            then unusable; the job is aborted at exit).
    """

    def __init__(self, message, failed_ranks=(), timed_out=False):
        super().__init__(message)
        self.failed_ranks = tuple(failed_ranks)
        self.timed_out = timed_out


class Channel:
    """One communicator's collectives with a deadline (seconds) each."""

    def __init__(self, comm, timeout):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = float(timeout)
        self._broken = None  # the message of the time-out that made the communicator unusable
        self._table = np.zeros((self.size, SYNC_WIDTH), np.float64)
        self._result = np.zeros_like(self._table)

    # --- the sync ---------------------------------------------------------------------------------

    def sync(self, what, values=()):
        """Every rank's row of (up to 7) float64 values, as a (ranks, 7) array; DistributedError when
        a rank has failed (on every rank alike)."""
        table = self._exchange(what, values, failed=False)
        if table[:, 0].any():
            raise self._peer_failure(what, table, message=None)
        return table[:, 1:]

    def fail(self, what, error):
        """Called by a rank whose operation raised `error`: joins the others' next sync with its flag
        set and exchanges the messages. Returns a DistributedError the caller may chain (it re-raises
        its own error)."""
        text = f"{type(error).__name__}: {error}"
        try:
            table = self._exchange(what, (), failed=True)
            return self._peer_failure(what, table, message=text)
        except DistributedError as e:  # a time-out while telling the others: they are stuck or gone
            return e

    def _exchange(self, what, values, failed):
        row = self._table
        row.fill(0)
        values = np.asarray(values, np.float64).ravel()
        if values.size > SYNC_WIDTH - 1:
            raise ValueError(f"{what}: a sync carries at most {SYNC_WIDTH - 1} values, got {values.size}")
        row[self.rank, 0] = 1.0 if failed else 0.0
        row[self.rank, 1:1 + values.size] = values
        self._wait(self._call(what, self.comm.Iallreduce, row, self._result, self._MPI.SUM), what)
        return self._result.copy()

    def _peer_failure(self, what, table, message):
        """After a sync showing failed ranks: every rank sends its message (empty if it did not fail)
        and builds the same DistributedError."""
        failed = [int(r) for r in np.flatnonzero(table[:, 0])]
        mine = np.zeros(_MESSAGE_BYTES, np.uint8)
        if message is not None:
            encoded = message.encode("utf-8", "replace")[:_MESSAGE_BYTES]
            mine[:len(encoded)] = np.frombuffer(encoded, np.uint8)
        every = np.zeros((self.size, _MESSAGE_BYTES), np.uint8)
        self._call(what, self.comm.Allgather, mine, every)
        texts = [bytes(every[r]).rstrip(b"\0").decode("utf-8", "replace") for r in failed]
        where = "; ".join(f"rank {r}: {t}" for r, t in zip(failed, texts))
        return DistributedError(f"{what}: {'rank' if len(failed) == 1 else 'ranks'} "
                                f"{', '.join(map(str, failed))} of {self.size} failed, so every rank stops ({where})",
                                failed_ranks=failed)

    # --- the collectives that follow a sync ---------------------------------------------------------

    def allreduce_(self, array, what):
        """Sums `array` (C-contiguous) over the ranks, in place."""
        self._call(what, self.comm.Allreduce, self._MPI.IN_PLACE, array, self._MPI.SUM)

    def bcast_(self, array, root, what):
        """Overwrites `array` (C-contiguous) with root's."""
        self._call(what, self.comm.Bcast, array, root)

    def allgatherv(self, local, counts, what):
        """The ranks' `local` arrays (rows of one shape) concatenated in rank order; counts[r] = rows of rank r."""
        row = int(np.prod(local.shape[1:], dtype=np.int64))
        out = np.empty((int(sum(counts)),) + local.shape[1:], local.dtype)
        sizes = [int(c) * row for c in counts]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
        self._call(what, self.comm.Allgatherv, np.ascontiguousarray(local),
                   [out, sizes, offsets, self._MPI.FLOAT if local.dtype == np.float32 else self._MPI.DOUBLE])
        return out

    # --- deadlines ----------------------------------------------------------------------------------

    def _call(self, what, fn, *args):
        if self._broken is not None:
            raise DistributedError(f"{what}: the communicator is unusable after an earlier time-out "
                                   f"({self._broken})", timed_out=True)
        try:
            return fn(*args)
        except self._MPI.Exception as e:
            raise DistributedError(f"{what}: MPI failed on rank {self.rank}: {e.Get_error_string()}") from e

    def _wait(self, request, what):
        """Polls the request until it completes or the deadline passes."""
        test = request.Test
        if test():
            return
        start = time.monotonic()
        spin_until, yield_until, deadline = start + _SPIN_SECONDS, start + _YIELD_SECONDS, start + self.timeout
        try:
            while not test():
                now = time.monotonic()
                if now > deadline:
                    break
                if now > yield_until:
                    time.sleep(_POLL_SLEEP)
                elif now > spin_until:
                    os.sched_yield()
            else:
                return
        except self._MPI.Exception as e:
            raise DistributedError(f"{what}: MPI failed on rank {self.rank}: {e.Get_error_string()}") from e
        self._broken = (f"rank {self.rank} waited {self.timeout:g} s in {what}: another rank is stuck, "
                        "gone, or not running the same operation")
        atexit.register(self._abort)
        raise DistributedError(f"{what}: timed out after {self.timeout:g} s on rank {self.rank} waiting for the other "
                               f"ranks (stuck, gone, or not running the same operation); the communicator is now "
                               "unusable and the job is aborted at exit (MPI_Abort)", timed_out=True)

    def _abort(self):
        self.comm.Abort(1)
