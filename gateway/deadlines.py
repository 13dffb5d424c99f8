"""Deadlines checked by one sweeping timer instead of a timer each.

The gateway puts a deadline on every request's headers and body. An asyncio timer per
deadline (call_later and cancel) costs ~7.5 us under uvloop, against ~0.2 us for listing
it here: every request would pay that twice, some 4 % of a record-chunk's time in the
gateway. One timer per list, armed only while something is listed, calls `on_expiry` for
what is overdue, at most `interval` seconds late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    def __init__(self, interval: float, on_expiry: Callable[[K], None]) -> None:
        self._interval = interval
        self._on_expiry = on_expiry
        self._deadlines: dict[K, float] = {}  # loop time
        self._armed = False

    def set(self, key: K, seconds: float) -> None:
        """`key` expires `seconds` from now, unless cleared before."""
        self.set_at(key, asyncio.get_running_loop().time() + seconds)

    def set_at(self, key: K, deadline: float) -> None:
        """`key` expires at loop time `deadline`, unless cleared before."""
        self._deadlines[key] = deadline
        if not self._armed:
            self._armed = True
            asyncio.get_running_loop().call_later(self._interval, self._sweep)

    def clear(self, key: K) -> None:
        self._deadlines.pop(key, None)

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        overdue = [key for key, deadline in self._deadlines.items() if deadline <= now]
        for key in overdue:
            del self._deadlines[key]
            self._on_expiry(key)
        self._armed = bool(self._deadlines)
        if self._armed:
            asyncio.get_running_loop().call_later(self._interval, self._sweep)
