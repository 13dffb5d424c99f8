"""The client's one retry policy: which failures are worth another try, and how long to
wait. A server that has a bad moment (a database restart, a deploy, a dropped connection,
throttling) must never cost the user the work already done, so every call of an upload
is retried the same way: exponential backoff with full jitter (clients and parts that
failed together spread out instead of coming back in lockstep), a wait of at least what
Retry-After asks for, and a bound on both the tries and the time spent on one call."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

T = TypeVar("T")

# Answers that say "not now" rather than "never": timeouts, throttling, server errors and
# outages. 500 is among them: a server bug or a dependency down is not the caller's fault,
# and the retries are bounded.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRYABLE_STATUS = TRANSIENT_STATUS  # the name storage code used first

DEFAULT_RETRIES = 30
# Long enough to outlast a database restart or a rolling deploy.
DEFAULT_RETRY_DEADLINE = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    # Tries per call, the first one included.
    attempts: int = DEFAULT_RETRIES + 1
    # Delay ceiling of the first retry; it doubles each time, up to max_delay.
    base_delay: float = 0.5
    max_delay: float = 10.0
    # Seconds one call may keep being retried, from its first try (None: no limit but
    # `attempts`).
    deadline: float | None = DEFAULT_RETRY_DEADLINE

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be 1 or more")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("delays must satisfy 0 <= base_delay <= max_delay")
        if self.deadline is not None and self.deadline < 0:
            raise ValueError("deadline must be 0 or more")

    def delay(
        self, retry: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry): anything
        from 0 to the exponential step ("full jitter"), but never less than the server's
        Retry-After."""
        step = min(self.max_delay, self.base_delay * (2 ** max(retry - 1, 0)))
        wait = (rng or random).uniform(0, step)
        return max(wait, retry_after) if retry_after is not None else wait

    def start(self) -> Backoff:
        """The retry state of one call."""
        return Backoff(self)


class Backoff:
    """Counts one call's tries and time against its policy."""

    def __init__(self, policy: RetryPolicy, *, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self._clock = clock
        self.started = clock()
        self.tries = 1  # the first try is under way when the state is made

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def next_wait(self, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next try, counting it; None once the tries or the
        deadline are spent. A wait that would pass the deadline ends at it (one last try
        there), so a Retry-After longer than the time left still gets its try."""
        if self.tries >= self.policy.attempts:
            return None
        wait = self.policy.delay(self.tries, retry_after=retry_after)
        if self.policy.deadline is not None:
            left = self.policy.deadline - self.elapsed
            if left <= 0:
                return None
            wait = min(wait, left)
        self.tries += 1
        return wait

    def summary(self) -> str:
        return f"{self.tries} tries over {self.elapsed:.0f} s"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    # A server asking for hours is not obeyed blindly: the deadline bounds the wait anyway.
    return max(0.0, min(seconds, 3600.0)) if seconds == seconds else None


def sleep(seconds: float, cancel: threading.Event | None) -> bool:
    """Waits; True when `cancel` was set meanwhile (the caller stops)."""
    if cancel is None:
        time.sleep(seconds)
        return False
    return cancel.wait(seconds)
