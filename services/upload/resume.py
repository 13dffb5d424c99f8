"""Resuming an upload: which parts storage already holds, and how the recorded chunks must
change to agree with it.

Storage (ListParts) is the truth about parts: a client may have PUT a part and died before
recording it, or recorded it in a database that since lost nothing but whose storage lost
the part. A stored part counts only with the exact size its number must have; a recorded
chunk storage does not hold (or holds with another ETag) is corrected."""

from __future__ import annotations

from dataclasses import dataclass

from .models import Chunk
from .parts import expected_part_size
from .storage import StoredPart


@dataclass(frozen=True)
class ResumablePart:
    part_number: int  # 1-based
    size: int
    etag: str
    checksum: str | None


@dataclass(frozen=True)
class Reconciliation:
    """Parts storage holds (in part order), and the chunk rows to write and to delete."""

    stored: list[ResumablePart]
    upserts: list[Chunk]
    deletes: list[int]  # 0-based chunk indexes

    @property
    def changes_anything(self) -> bool:
        return bool(self.upserts or self.deletes)


def reconcile(
    *,
    stored: dict[int, StoredPart],
    recorded: dict[int, Chunk],
    size: int,
    part_size: int,
    part_count: int,
) -> Reconciliation:
    """`stored` by 1-based part number (ListParts), `recorded` by 0-based chunk index."""
    usable: list[ResumablePart] = []
    upserts: list[Chunk] = []
    for number in sorted(stored):
        part = stored[number]
        if not 1 <= number <= part_count:
            continue  # not a part of this layout: completion will not name it
        if part.size != expected_part_size(number - 1, size=size, part_size=part_size):
            continue  # the client must send this part again (its PUT replaces it)
        chunk = recorded.get(number - 1)
        same = chunk is not None and chunk.etag == part.etag and chunk.size == part.size
        # Storage's checksum where it reports one, else the one recorded for these bytes.
        checksum = part.checksum or (chunk.checksum if same else None)
        usable.append(ResumablePart(number, part.size, part.etag, checksum))
        if not same or (checksum and chunk.checksum != checksum):
            upserts.append(
                Chunk(chunk_index=number - 1, size=part.size, etag=part.etag, checksum=checksum)
            )
    held = {part.part_number - 1 for part in usable}
    deletes = sorted(index for index in recorded if index not in held)
    return Reconciliation(stored=usable, upserts=upserts, deletes=deletes)
