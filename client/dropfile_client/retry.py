"""When and how long to wait before trying again: exponential backoff with jitter, so that
many clients (or many parts) that failed together do not retry in lockstep."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    # Tries per operation, the first one included.
    attempts: int = 5
    # Delay before the first retry; it doubles each time, up to max_delay.
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be 1 or more")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("delays must satisfy 0 <= base_delay <= max_delay")

    def delay(self, retry: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry): half the
        exponential step fixed, half random ("equal jitter"), so waits still grow."""
        step = min(self.max_delay, self.base_delay * (2 ** max(retry - 1, 0)))
        return step / 2 + (rng or random).uniform(0, step / 2)


# Storage answers that are worth another try: throttling, timeouts and server errors.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
