"""`make run`'s restart backoff: 0.5 s, doubling on each quick crash up to 30 s, back to
0.5 s once the process has run a minute. (A real crash under `make run` is in
tests/e2e/test_make_run.py.)"""
from __future__ import annotations

import signal

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
