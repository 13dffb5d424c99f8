"""Garbage-collector pauses out of the request path: set once, when a process has started.

Python's cyclic collector now and then makes a full pass over every object it tracks. What
a process makes while starting (modules, the FastAPI app with its routes and models, the
gRPC server, the clients) lives as long as the process, yet each full pass walked it all:
~35 ms in the gateway, a pause every request in flight waits out, which set the tail of
its latency. Frozen once started (gc.freeze), those objects are left out of every pass;
the collector still collects what is made afterwards."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collects what starting up left behind, then moves every surviving object to the
    collector's permanent generation."""
    gc.collect()
    gc.freeze()
