"""`make run`'s restart backoff: 0.5 s, doubling on each quick crash up to 30 s, back to
0.5 s once the process has run a minute. (A real crash under `make run` is in
tests/e2e/test_make_run.py.)"""

from __future__ import annotations

import signal

import pytest

from tools.run_stack import describe_exit, next_delay


def test_quick_crashes_double_the_wait_up_to_30_seconds():
    delays, delay = [], None
    for _ in range(9):
        delay = next_delay(delay, ran_for=1.0)
        delays.append(delay)
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_a_process_that_ran_a_minute_starts_over():
    assert next_delay(30.0, ran_for=61.0) == 0.5


def test_the_log_names_the_signal_or_the_code():
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"


@pytest.mark.slow
def test_a_killed_child_is_started_again_and_the_log_says_so(capsys):
    """Real processes: one killed with SIGKILL comes back after the first wait (0.5 s);
    killed again at once, it waits twice as long."""
    import os
    import sys
    import time

    from tools.run_stack import Children

    children = Children()
    first = children.start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        pids = [first.pid]
        for expected_wait in (0.5, 1):
            os.kill(pids[-1], signal.SIGKILL)
            killed_at = time.monotonic()
            deadline = killed_at + 10
            while (
                children.children[0].proc.pid == pids[-1]
                or children.children[0].proc.poll() is not None
            ):
                assert time.monotonic() < deadline, "the child was not restarted"
                children.supervise()
                time.sleep(0.05)
            assert time.monotonic() - killed_at >= expected_wait
            pids.append(children.children[0].proc.pid)
        out = capsys.readouterr().out
        assert "sleeper was killed by SIGKILL after" in out
        assert "restarting it in 0.5 s" in out and "restarting it in 1 s" in out
        assert f"sleeper restarted (pid {pids[1]})" in out
        assert f"sleeper restarted (pid {pids[2]})" in out
    finally:
        children.stop(first=set(), timeout=5)
