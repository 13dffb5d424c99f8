"""The process's limit on open files, raised as far as it may go at start: a gateway holds
a connection per Server-Sent Events client and an events process one per stream when its
clients open a connection each, thousands of sockets beside the default soft limit of
1,024 (raising the soft limit up to the hard one needs no privilege)."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_open_files_limit(wanted: int | None = None) -> int:
    """Raises the soft RLIMIT_NOFILE to `wanted` (default: the hard limit), never above the
    hard limit and never lowering it; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else wanted
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if soft == resource.RLIM_INFINITY or target <= soft:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open files limit from %d: %s", soft, exc)
        return soft
    return target
