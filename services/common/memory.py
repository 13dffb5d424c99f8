"""Large blocks of memory leave the process when freed: set once, at start, in every process.

glibc's malloc gives each large block (128 KiB or more) a mapping of its own, unmapped when
the block is freed, but once such a block is freed it raises that threshold to the block's
size (up to 32 MiB), and the free space it leaves at the heap's end before handing it back
to twice that: later blocks that size come from the heap, where they stay resident after
being freed, and a buffer that grows there is copied to a new place each time instead of
being remapped. A process that now and then builds a reply of many megabytes (v1's 10,000
URLs: the encoded reply and gRPC's copy of it, ~10 MB) so keeps a reply's worth of pages,
and more as the heap fragments, and a growing buffer costs twice its size. Fixing the
threshold at glibc's own starting value (which fixes the other too) keeps every large
block in its own mapping: its pages are back to the system as soon as it is freed.

The price: such a block's pages are fresh, zeroed ones each time (~1,200 page faults per
5 MB), ~10-15 ms on a 10,000-URL initiation (~75 → ~90 ms through the gateway; its
target is 1 s) for ~20 MB less at the coordinator's peak (bench/README.md)."""

from __future__ import annotations

import ctypes
import os

# mallopt's parameter number (malloc.h) and the environment variable glibc reads for it.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_VARIABLE = "MALLOC_MMAP_THRESHOLD_"
LARGE_BLOCK_BYTES = 128 * 1024


def map_large_blocks_apart() -> None:
    """Fixes malloc's threshold for blocks of their own at LARGE_BLOCK_BYTES, unless the
    environment sets one (glibc has read it then); nothing where the C library is not
    glibc."""
    if _MMAP_THRESHOLD_VARIABLE in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return  # another C library (musl, macOS): its own policy stands
    mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)
