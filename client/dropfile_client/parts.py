"""How a file splits into parts, and how a part is read from disk: in small blocks, so a
part is never held in memory whole (memory stays bounded by parallel uploads x block)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import DropfileError

MIB = 1024 * 1024
# The v1 contract: parts of exactly 5 MiB, the last one shorter.
V1_PART_SIZE = 5 * MIB
# What a part is read (and sent) in: small enough to keep memory low, big enough to be fast.
BLOCK_SIZE = 256 * 1024


@dataclass(frozen=True)
class Part:
    number: int  # 1-based S3 part number
    offset: int
    size: int

    @property
    def index(self) -> int:
        """0-based, as record-chunk's chunk_index."""
        return self.number - 1


def part_count(size: int, part_size: int) -> int:
    return max(1, -(-size // part_size))


def layout(size: int, url_count: int, part_size: int = V1_PART_SIZE) -> list[Part]:
    """The parts of a `size`-byte file the server gave `url_count` URLs for. The server
    decides the part count; the v1 part size must agree with it, since the server checks
    every part's size when it is recorded."""
    if url_count != part_count(size, part_size):
        raise DropfileError(
            f"the server asked for {url_count} parts for {size} bytes, but this client "
            f"uploads parts of {part_size // MIB} MiB ({part_count(size, part_size)} parts)"
        )
    return [
        Part(
            number=index + 1,
            offset=index * part_size,
            size=min(part_size, size - index * part_size),
        )
        for index in range(url_count)
    ]


class Cancelled(Exception):
    """The upload was cancelled while this part was being sent."""


def read_blocks(
    fd: int,
    part: Part,
    *,
    cancel: threading.Event,
    on_bytes: Callable[[int], None],
    file_label: str,
) -> Iterator[bytes]:
    """The part's bytes from `fd` (positional reads: threads share the descriptor), in
    blocks, reporting each block to `on_bytes`; stops between blocks when cancelled."""
    offset, remaining = part.offset, part.size
    while remaining:
        if cancel.is_set():
            raise Cancelled()
        block = os.pread(fd, min(BLOCK_SIZE, remaining), offset)
        if not block:
            raise DropfileError(f"{file_label} got shorter while it was being uploaded")
        offset += len(block)
        remaining -= len(block)
        on_bytes(len(block))
        yield block
