"""A long-lived child process that runs fuzz cases one by one, and the parent's handle on it.

Protocol: the parent writes one JSON line per case to the worker's stdin, ``{"code": "..."}``;
the worker execs it after ``from tests.fuzz.prelude import *`` and writes one JSON line to a
private pipe (its stdout/stderr stay free for whatever the library prints, and go to a log file):
``{"status": "ok" | "raised" | "insane" | "accepted", "type": ..., "message": ...}``
(insane and accepted: the case's own oracle, see prelude.py).
When the worker dies (a signal, an ASan report) or does not answer in time (a hang), the
parent records the case with the signal or the last lines of the log, starts a new worker and
goes on. Starting a worker costs an import of numpy and fastnn, once per crash instead of once per case.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRELUDE = "from tests.fuzz.prelude import *"


def serve(reply_fd):
    """The worker's loop (runs in the child)."""
    if not os.environ.get("FASTNN_SANITIZED"):
        # A case that asks for a huge allocation gets a MemoryError here instead of swapping the
        # machine (ASan reserves terabytes of address space, so it limits allocations itself).
        import resource

        limit = int(float(os.environ.get("FASTNN_FUZZ_MEMORY_GB", "3")) * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    base = {}
    exec(PRELUDE, base)
    import fastnn

    threads = fastnn.get_num_threads()
    out = os.fdopen(reply_fd, "w", buffering=1)
    out.write('{"status": "ready"}\n')
    for line in sys.stdin:
        code = json.loads(line)["code"]
        ns = dict(base)
        try:
            with open("/proc/self/clear_refs", "w") as f:  # peak RSS from here (prelude.within_rss)
                f.write("5")
        except OSError:
            pass
        try:
            exec(compile(code, "<case>", "exec"), ns)
            reply = {"status": "ok"}
        except BaseException as e:  # noqa: B902 - SystemExit from argparse is an answer too
            status = {"Insane": "insane", "Accepted": "accepted"}.get(type(e).__name__, "raised")
            reply = {"status": status, "type": type(e).__name__, "message": str(e)[:4000],
                     "code": e.code if isinstance(e, SystemExit) else None}
        finally:
            fastnn.set_num_threads(threads)
        sys.stdout.flush()
        sys.stderr.flush()
        out.write(json.dumps(reply, default=str) + "\n")


class Worker:
    """The parent's side: run(code) -> reply dict; a crash or hang is a reply too
    (status "crash" with "signal" or "exit", or status "hang")."""

    def __init__(self, timeout=None):
        default = "60" if os.environ.get("FASTNN_SANITIZED") else "20"
        self.timeout = timeout or float(os.environ.get("FASTNN_FUZZ_TIMEOUT", default))
        self.proc = None
        self.starts = 0

    def _start(self):
        self.tmp = tempfile.mkdtemp(prefix="fastnn-fuzz-")  # the cases' files (prelude.tmp_path) and the log
        self.log_path = os.path.join(self.tmp, "worker.log")
        r, w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [env.get("PYTHONPATH", ""), ROOT] if p)
        env.setdefault("OMP_NUM_THREADS", "2")
        env["FASTNN_FUZZ_TMP"] = self.tmp
        log = open(self.log_path, "ab")  # append mode: the parent truncates it before each case
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"import sys; from tests.fuzz.worker import serve; serve({w})"],
            stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(w,), cwd=ROOT, env=env,
            start_new_session=True, text=True)
        log.close()
        os.close(w)
        self.reply = os.fdopen(r, "r")
        self.buffer = ""
        self.starts += 1
        ready = self._read_reply(60)
        if ready.get("status") != "ready":  # the prelude itself fails: no case can run
            log = ready.get("log", "")
            self._stop()
            raise RuntimeError(f"the fuzz worker did not start: {ready}\n{log}")

    def _log_tail(self, limit=200_000):
        """What the dying worker printed (a sanitizer's report starts with its diagnosis)."""
        with open(self.log_path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")

    def _stop(self):
        """Kills the worker (if it still runs) and forgets it; the next case starts a new one."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            try:
                self.proc.stdin.close()
            except OSError:  # unflushed input to a dead process
                pass
            self.reply.close()
            self.proc = None
        if getattr(self, "tmp", None):
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def run(self, code):
        if self.proc is None:
            self._start()
        os.truncate(self.log_path, 0)
        try:
            self.proc.stdin.write(json.dumps({"code": code}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # it died after its last answer: the reply pipe tells
            pass
        return self._read_reply(self.timeout)

    def _read_reply(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.reply.fileno()
        while "\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                tail = self._log_tail()
                self._stop()
                return {"status": "hang", "message": f"no answer in {timeout:.0f} s", "log": tail}
            chunk = os.read(fd, 1 << 16).decode()
            if not chunk:  # the worker died
                rc = self.proc.wait()
                tail = self._log_tail()
                self._stop()
                if rc < 0:
                    return {"status": "crash", "signal": signal.Signals(-rc).name, "log": tail}
                return {"status": "crash", "exit": rc, "log": tail}
            self.buffer += chunk
        line, self.buffer = self.buffer.split("\n", 1)
        return json.loads(line)

    def close(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, OSError):
                pass
            self._stop()


def reproducer(code):
    """A shell line that runs the case on its own (from the repository root)."""
    import shlex

    line = PRELUDE + "; " + code
    if not any(ch in line for ch in '"$`\\!'):
        return f'PYTHONPATH=python:. python -c "{line}"'
    return f"PYTHONPATH=python:. python -c {shlex.quote(line)}"


if __name__ == "__main__":  # python tests/fuzz/worker.py 'CODE': run one case through a worker
    w = Worker()
    print(w.run(sys.argv[1]))
    w.close()
