"""The fuzz harness itself: a case that kills the worker, hangs, or breaks the oracle is recorded
as such, and the next case runs in a fresh worker."""

from tests.fuzz.harness import Results, judge
from tests.fuzz.worker import Worker


def _verdict(worker, code, family="functional"):
    return judge(family, code, worker.run(code))


def test_a_crash_is_recorded_with_its_signal_and_the_worker_restarts():
    w = Worker(timeout=30)
    try:
        category, detail = _verdict(w, "import ctypes; ctypes.string_at(0)")  # a read at address 0
        assert category == "crash"
        # a normal build dies of the signal; under ASan the sanitizer reports it and exits
        assert detail.startswith("SIGSEGV") or "SEGV" in detail, detail
        assert w.proc is None
        assert _verdict(w, "r = F.relu_forward(A((2, 3)))") == ("pass", "")
        assert w.starts == 2
    finally:
        w.close()


def test_a_hang_is_recorded_and_the_worker_restarts():
    w = Worker(timeout=2)
    try:
        category, detail = _verdict(w, "import time; time.sleep(60)")
        assert category == "hang" and "2 s" in detail
        assert _verdict(w, "x = 1") == ("pass", "")
    finally:
        w.close()


def test_the_oracle(fuzz_worker):
    cases = {
        "F.relu_forward(A((2, 3), 'c8'))": "pass",  # a clear TypeError naming the op
        "raise ZeroDivisionError('x')": "unexpected-type",
        "raise ValueError('')": "bad-message",
        "raise ValueError('f(): incompatible function arguments. The following')": "bad-message",
        "raise ValueError('label %d is not a class index' % (140441782874719 + 1))": "bad-message",
        "raise ValueError('label 1099511627776 is not a class index')": "pass",  # 2**40, an input value
        "ok_rows(np.zeros((3, 2)), 4)": "insane",
        "ok_finite(np.array([np.nan]))": "insane",
        "accepted('p=-1')": "accepted",
        "VALID = 1; raise ValueError('[op] refused')": "refused",
        "import sys; sys.exit(2)": "unexpected-type",
    }
    for code, expected in cases.items():
        assert _verdict(fuzz_worker, code)[0] == expected, code
    assert _verdict(fuzz_worker, "import sys; sys.exit(2)", "cli")[0] == "pass"  # argparse's usage error
    assert _verdict(fuzz_worker, "raise MemoryError('x')", "io")[0] == "unexpected-type"  # must be ModelFileError


def test_results_keep_one_shortest_reproducer_per_distinct_failure():
    r = Results()
    r.add("functional", "r = F.relu_forward(A((2**31 + 7, 5), 'f4', 'bcast')); r", "crash", "SIGSEGV: ")
    r.add("functional", "r = F.relu_forward(A((2**32 + 1, 5), 'f4', 'bcast'))", "crash", "SIGSEGV: ")
    r.add("functional", "r = F.relu_forward(A((2, 5)))", "pass", "")
    assert r.counts["cases"] == 3 and r.counts["crash"] == 2 and len(r.failures) == 1
    (_, _, code, count), = r.failures.values()
    assert count == 2 and code == "r = F.relu_forward(A((2**32 + 1, 5), 'f4', 'bcast'))"
    assert "1 crashes" not in r.summary() and "2 crashes" in r.summary()


def test_a_worker_that_dies_after_answering_is_blamed_on_the_next_case_which_then_reruns_alone():
    import time

    w = Worker(timeout=30)
    try:
        assert w.run("import os, threading; threading.Timer(0.2, os._exit, (3,)).start()")["status"] == "ok"
        time.sleep(1)
        assert w.run("x = 1") == {"status": "crash", "exit": 3, "log": ""}  # its stdin pipe is broken
        assert w.run("x = 1")["status"] == "ok"  # in a fresh worker
    finally:
        w.close()
