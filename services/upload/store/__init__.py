"""Persistence of files and their parts (PostgreSQL, the source of truth). Every query the
upload coordinator runs lives in this package; the use cases decide, the stores read and
write:

- files.py: the files table, read and locked (FileStore);
- usage.py: a user's usage and the transaction that creates a file (UsageStore);
- parts.py: recorded parts, the hot path's upserts (PartStore);
- reaper.py: the reaper's claims on idle uploads and its orphan scan (ReaperStore);
- tombstones.py: keys to delete from storage once their last URL expired (TombstoneStore);
- reads.py: one-statement reads, shared.

A database that is briefly unreachable (a restart, a failover) is waited for here, for
up to the Database's retry_seconds: reads and idempotent writes are run again whole; a
transaction that hands its session to the caller's block is retried only up to the
yield (its reads and locks). What still fails is a transient error (UNAVAILABLE)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from services.common.db import Database

from .files import FileDeletion, FileStore
from .listing import ListingStore
from .parts import PartRecord, PartStore
from .reads import Reads
from .reaper import ORPHAN_SCAN_LOCK, IdleClaim, ReaperStore
from .tombstones import TombstoneClaim, TombstoneStore, record_tombstone
from .usage import QUOTA_LOCK_NAMESPACE, FileCreation, FileIdTaken, UsageStore


class UploadStore:
    """The upload coordinator's stores on one database."""

    def __init__(self, db: Database, *, autocommit: Engine) -> None:
        """`autocommit`: an engine in AUTOCOMMIT mode, without pre-ping, on the same
        database, for the single-statement hot path (recording parts, one round trip) and
        single-statement reads (owned_file)."""
        reads = Reads(db, autocommit=autocommit)
        self.files = FileStore(db, reads)
        self.usage = UsageStore(db, reads)
        self.parts = PartStore(db, reads, autocommit=autocommit)
        # ListFiles' pages (listing.py).
        self.listing = ListingStore(db, autocommit=autocommit)
        # Keys of removed single PUTs, deleted again later (tombstones.py).
        self.tombstones = TombstoneStore(db)


__all__ = [
    "ORPHAN_SCAN_LOCK",
    "QUOTA_LOCK_NAMESPACE",
    "FileCreation",
    "FileDeletion",
    "FileIdTaken",
    "FileStore",
    "IdleClaim",
    "ListingStore",
    "PartRecord",
    "PartStore",
    "ReaperStore",
    "Reads",
    "TombstoneClaim",
    "TombstoneStore",
    "UploadStore",
    "UsageStore",
    "record_tombstone",
]
