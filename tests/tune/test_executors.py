"""The process-wide default pool (tune.default_executor) at interpreter exit: a script that never
shuts it down exits promptly, without tracebacks, and leaves no process behind."""

import os
import subprocess
import sys
import time

from ..isolation import child_env

SCRIPT = """\
import time
from fastnn import tune
from tests.tune import objectives

BUSY = {busy}

if __name__ == "__main__":  # spawned workers import this file
    space = {{"lr": tune.loguniform(1e-3, 1e-1), "width": tune.randint(0, 7), "act": tune.choice(["relu"])}}
    result = tune.random_search(objectives.bowl, space, n_trials=2, epochs=1, seed=0)  # executor: the default pool
    assert len(result.table) == 2
    pool = tune.default_executor()
    if BUSY:  # more tasks than workers: some run, one waits
        for _ in range(pool.n_workers + 1):
            pool.submit(time.sleep, 600)
        time.sleep(0.5)
    print("workers", *pool.pids, flush=True)
"""


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _run_to_exit(tmp_path, busy):
    script = tmp_path / "uses_the_default_pool.py"
    script.write_text(SCRIPT.format(busy=busy))
    # its own process group: the script's workers, and any replacement started while exiting, are in it
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(), cwd=tmp_path, start_new_session=True)
    try:
        first = proc.stdout.readline()  # the search ran: the script is about to return
        ended = time.monotonic()
        out, err = proc.communicate(timeout=120)
        exit_seconds = time.monotonic() - ended
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    deadline = time.monotonic() + 20
    while _group_alive(proc.pid) and time.monotonic() < deadline:  # the resource tracker ends after its parent
        time.sleep(0.1)
    leftover = _group_alive(proc.pid)
    if leftover:
        os.killpg(proc.pid, 9)
    return proc.returncode, first + out, err, exit_seconds, leftover


def test_a_script_using_the_default_pool_exits_cleanly_and_leaves_no_process(tmp_path):
    code, out, err, seconds, leftover = _run_to_exit(tmp_path, busy=False)
    assert code == 0, err
    assert out.startswith("workers "), out
    assert "Traceback" not in err, err  # the dispatcher used to respawn workers that multiprocessing's exit killed
    assert not leftover, "processes of the script outlived it"
    assert seconds < 60, seconds  # generous: interpreter teardown on a loaded 2-core machine


def test_tasks_still_running_at_exit_are_stopped(tmp_path):
    code, out, err, seconds, leftover = _run_to_exit(tmp_path, busy=True)
    assert code == 0, err
    assert "Traceback" not in err, err
    assert not leftover, "processes of the script outlived it"
    assert seconds < 60, seconds  # not the tasks' 600 s
