"""Where trials run: a local pool of spawned worker processes, each pinned to its own thread count,
or any concurrent.futures.Executor (a Dask cluster's ``Client(...).get_executor()``).

A worker that dies mid-task (killed, out of memory, a crash in native code) fails only the task it
was running, with :class:`WorkerDied`; the pool starts a replacement and the search retries the task
(:func:`run_tasks`). A ProcessPoolExecutor, in contrast, breaks for good when one worker dies.
"""

import atexit
import concurrent.futures as _cf
from concurrent.futures.process import BrokenProcessPool as _BrokenProcessPool
import multiprocessing as _mp
import multiprocessing.connection as _mpc
import os
import pickle
import threading
import time
import traceback
import weakref

from .. import _validate as _v

__all__ = ["LocalPool", "WorkerDied", "run_tasks", "default_executor"]

# Set in each worker before it imports numpy or fastnn: libgomp and OpenBLAS read them once, at load.
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_env_lock = threading.Lock()


class WorkerDied(RuntimeError):
    """The worker process running a task exited before returning its result."""


class _TaskError(Exception):
    """An exception a task raised in a worker that cannot be sent back as itself."""


def _worker_main(conn, threads):
    from .. import set_num_threads

    set_num_threads(threads)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        task_id, payload = message
        try:
            fn, args, kwargs = pickle.loads(payload)  # here, so that a function this process cannot import fails its task
            reply = (task_id, True, fn(*args, **kwargs))
        except BaseException as e:  # sent back to the caller's future, the worker carries on
            reply = (task_id, False, e)
        try:
            conn.send(reply)
        except Exception as e:  # the result or the exception does not pickle
            conn.send((task_id, False, _TaskError(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")))


class _Worker:
    def __init__(self, context, threads):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, threads), daemon=True)
        env = {name: str(threads) for name in _THREAD_ENV}
        with _env_lock:  # a spawned child inherits the environment at start
            saved = {name: os.environ.get(name) for name in env}
            os.environ.update(env)
            try:
                self.process.start()
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
        child.close()
        self.task = None  # (task_id, future) while busy


class LocalPool(_cf.Executor):
    """A pool of ``n_workers`` spawned processes, each running fastnn with ``threads_per_worker``
    threads (so 2 workers × 1 thread use 2 cores without oversubscription).

    Functions and arguments are pickled (functions by reference: module-level functions);
    fastnn models cross as bytes of fastnn's model format (``fastnn.io.to_bytes``), not pickles.
    The default is one worker per core, one thread each. Processes start with 'spawn' (or
    'forkserver'): forking a process that has run OpenMP is unsafe. A spawned worker gets
    OMP/OPENBLAS/MKL_NUM_THREADS = threads_per_worker in its environment before it loads numpy;
    forkserver workers inherit the server's environment (from its first start) and are pinned by
    ``fastnn.set_num_threads`` alone.
    """

    def __init__(self, n_workers=None, threads_per_worker=1, context="spawn"):
        cores = os.cpu_count() or 1
        self.n_workers = _v.check_int(n_workers if n_workers is not None else cores, "LocalPool", "n_workers", 1)
        self.threads_per_worker = _v.check_int(threads_per_worker, "LocalPool", "threads_per_worker", 1)
        context = _v.check_choice(context, "LocalPool", "context", ("spawn", "forkserver"))
        self._context = _mp.get_context(context)
        self._lock = threading.Lock()
        self._pending = []  # (task_id, future, fn, args, kwargs) not yet sent
        self._next_id = 0
        self._shutdown = False
        self.deaths = []  # (pid, exitcode, task_id) of each worker that died while running a task
        self._wake_r, self._wake_w = self._context.Pipe(duplex=False)
        self._workers = [_Worker(self._context, self.threads_per_worker) for _ in range(self.n_workers)]
        self._thread = threading.Thread(target=self._dispatch, name="fastnn-LocalPool", daemon=True)
        self._thread.start()
        _open_pools.add(self)

    def submit(self, fn, /, *args, **kwargs):
        future = _cf.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("LocalPool.submit: the pool is shut down")
            self._pending.append((self._next_id, future, fn, args, kwargs))
            self._next_id += 1
        self._wake_w.send(b"")
        return future

    @property
    def pids(self):
        """Process ids of the current workers."""
        return [w.process.pid for w in self._workers]

    def _assign(self):
        with self._lock:
            for w in self._workers:
                while w.task is None and self._pending:
                    task_id, future, fn, args, kwargs = self._pending.pop(0)
                    if not future.set_running_or_notify_cancel():
                        continue
                    try:
                        payload = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
                    except Exception as e:  # the task does not pickle: its own error, not the worker's
                        future.set_exception(e)
                        continue
                    w.task = (task_id, future)
                    try:
                        w.conn.send((task_id, payload))
                    except OSError:  # the worker is gone: its sentinel reports it, and the task fails as lost
                        break

    def _replace(self, worker):
        worker.process.join(0.1)
        task = worker.task
        if task is not None:
            self.deaths.append((worker.process.pid, worker.process.exitcode, task[0]))
            task[1].set_exception(WorkerDied(
                f"LocalPool: worker process {worker.process.pid} exited with code {worker.process.exitcode} "
                "while running a task (killed, out of memory, or a crash in native code)"))
        worker.conn.close()
        index = self._workers.index(worker)
        if not self._shutdown:
            self._workers[index] = _Worker(self._context, self.threads_per_worker)
        else:
            self._workers.pop(index)

    def _dispatch(self):
        try:
            self._dispatch_loop()
        except BaseException as e:  # a bug here must not leave callers waiting forever
            with self._lock:
                self._shutdown = True
                futures = [f for _, f, *_ in self._pending] + [w.task[1] for w in self._workers if w.task]
                self._pending.clear()
            for f in futures:
                if not f.done():
                    f.set_exception(RuntimeError(f"LocalPool: the dispatcher failed: {type(e).__name__}: {e}"))
            for w in self._workers:
                w.process.terminate()
            raise

    def _dispatch_loop(self):
        while True:
            self._assign()
            with self._lock:
                done = self._shutdown and not self._pending and all(w.task is None for w in self._workers)
            if done:
                break
            by_handle = {}
            for w in self._workers:
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
            ready = _mpc.wait([self._wake_r, *by_handle])
            for handle in ready:
                if handle is self._wake_r:
                    while self._wake_r.poll():
                        self._wake_r.recv()
                    continue
                w = by_handle[handle]
                if w not in self._workers:
                    continue
                if handle is w.conn:
                    try:
                        task_id, ok, value = w.conn.recv()
                    except (EOFError, OSError):
                        self._replace(w)
                        continue
                    except Exception as e:  # a result this process cannot unpickle: the task's error
                        ok, value = False, e
                    _, future = w.task
                    w.task = None
                    future.set_result(value) if ok else future.set_exception(value)
                elif not w.conn.poll():  # exited, and no result left to read
                    self._replace(w)
        for w in self._workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        for w in self._workers:
            w.process.join(5)
            if w.process.is_alive():
                w.process.terminate()

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for _, future, *_ in self._pending:
                    future.cancel()
                self._pending.clear()
        self._wake_w.send(b"")
        if wait:
            self._thread.join()

    def _close_at_exit(self, timeout=10.0):
        """At interpreter exit: waiting tasks are cancelled, running ones stopped (their workers
        terminated), and the idle workers end. Otherwise multiprocessing's own exit handler kills
        the daemon workers while the dispatcher still runs, which starts replacements that die
        half-spawned (EOFError tracebacks, orphan processes)."""
        if not self._thread.is_alive():
            return
        self.shutdown(wait=False, cancel_futures=True)
        for w in list(self._workers):
            if w.task is not None:
                w.process.terminate()
        self._thread.join(timeout)
        for w in list(self._workers):  # a dispatcher that did not finish in time
            if w.process.is_alive():
                w.process.terminate()


# Pools not shut down by their user, closed at exit. Registered after multiprocessing.util's own
# handler (imported above with multiprocessing.connection), so that atexit runs this one first.
_open_pools = weakref.WeakSet()


@atexit.register
def _close_open_pools():
    for pool in list(_open_pools):
        pool._close_at_exit()


_default = {}


def default_executor():
    """The process-wide LocalPool (one worker per core, one thread each), started on first use."""
    pool = _default.get("pool")
    if pool is None or pool._shutdown:
        pool = _default["pool"] = LocalPool()
    return pool


def run_tasks(executor, fn, arguments, retries=1, on_result=None):
    """``[fn(*a) for a in arguments]`` on `executor`, in order; a task whose worker died
    (:class:`WorkerDied`, Dask's KilledWorker, a broken process pool) is retried up to `retries`
    times. Returns (results, failures): results[i] is None for a task that failed every time, and
    failures lists {"task", "attempt", "error"} for every failed attempt. Exceptions the task itself
    raised propagate."""
    retries = _v.check_int(retries, "run_tasks", "retries", 0)
    if executor is None or executor == "sequential":
        results = [fn(*a) for a in arguments]
        if on_result:
            for i, r in enumerate(results):
                on_result(i, r)
        return results, []
    if not isinstance(executor, _cf.Executor) and not hasattr(executor, "submit"):
        raise TypeError(f"executor must be a concurrent.futures.Executor, 'sequential' or None, got "
                        f"{type(executor).__name__}")
    results = [None] * len(arguments)
    failures = []
    attempts = [0] * len(arguments)
    futures = {executor.submit(fn, *a): i for i, a in enumerate(arguments)}
    while futures:
        done, _ = _cf.wait(list(futures), return_when=_cf.FIRST_COMPLETED)
        for future in done:
            i = futures.pop(future)
            try:
                results[i] = future.result()
            except BaseException as e:
                if not _lost_worker(e):
                    for f in futures:
                        f.cancel()
                    raise
                failures.append({"task": i, "attempt": attempts[i], "error": f"{type(e).__name__}: {e}"})
                attempts[i] += 1
                if attempts[i] <= retries:
                    futures[executor.submit(fn, *arguments[i])] = i
                continue
            if on_result:
                on_result(i, results[i])
    return results, failures


def _lost_worker(error):
    if isinstance(error, (WorkerDied, _BrokenProcessPool)):
        return True
    return type(error).__name__ == "KilledWorker"  # dask.distributed, without importing it
