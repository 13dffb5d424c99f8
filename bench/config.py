"""How much the bench does: the full run of `make bench`, and the tiny smoke run the test
suite makes of the same code (same rows, tiny sizes, one round, no timing meaning)."""

from __future__ import annotations

from dataclasses import dataclass, replace

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class BenchConfig:
    name: str
    rounds: int
    # 1. Upload and download throughput.
    file_size: int
    # Parts in flight for Dropfile's client and for boto3 alike.
    concurrency: int
    # 2. Control plane: record-chunk at `load_concurrency`, then one at a time.
    load_concurrency: int
    load_seconds: float
    serial_seconds: float
    warmup_seconds: float
    # 3. Initiation: (row label, parts) measured `initiations` times per round each.
    initiations: tuple[tuple[str, int, int], ...]
    # 4. Uploads per round whose confirmation is timed, per path.
    event_uploads: int
    # 5. Sign-in storm.
    bcrypt_seconds: float
    storm_seconds: float
    storm_concurrency: int
    # Connections of the sign-in flood (accounts that do not exist), beside which refresh
    # and authenticate are timed; it lasts storm_seconds.
    flood_concurrency: int
    # BCRYPT_ROUNDS of the stack (12 is the product's default, measured in the full run).
    bcrypt_rounds: int
    # 7. Load without loss: small and large uploads at once, every one to UPLOADED.
    load_small_uploads: int = 200
    load_large_uploads: int = 20
    load_large_size: int = 50 * MIB
    load_rounds: int = 1
    # ... and a burst of `load_burst_uploads` x `load_burst_size` at once, beside boto3's
    # put_object straight to the store at the same concurrency.
    load_burst_uploads: int = 500
    load_burst_size: int = MIB
    # The burst's flow (bench/upload_burst.py): "v2", the SDK's (a single PUT for a file of
    # one part), "v2-multipart" (the SDK's before single PUTs), or "v1", the browser's.
    load_burst_flow: str = "v2"
    # Another flow's burst in the same rounds, for an A/B on the same machine ("": none).
    load_burst_compare_flow: str = "v2-multipart"
    # 8. Upload across a WAN (through bench/wan_proxy.py).
    wan_file_size: int = GIB
    # 9. Uploads from a browser (Chromium), loopback and WAN.
    browser_file_size: int = 256 * MIB
    # 10. Live streams: WatchFileEvents streams held open on one events process, over
    # `stream_connections` connections, and status changes published while they are.
    streams: int = 5000
    stream_connections: int = 50
    stream_changes: int = 500
    # 10. A million files: rows COPYed over `listing_users` users, one of whom holds
    # `listing_big_user_rows` and another `listing_medium_user_rows`; requests timed per row.
    listing_rows: int = 1_000_000
    listing_users: int = 1000
    listing_big_user_rows: int = 100_000
    listing_medium_user_rows: int = 1000
    listing_samples: int = 200


FULL = BenchConfig(
    name="full",
    rounds=3,
    file_size=GIB,
    concurrency=4,
    load_concurrency=32,
    load_seconds=5.0,
    serial_seconds=3.0,
    warmup_seconds=1.0,
    initiations=(("1 GiB", 205, 15), ("48.8 GiB", 10_000, 5)),
    event_uploads=8,
    bcrypt_seconds=4.0,
    storm_seconds=8.0,
    storm_concurrency=8,
    flood_concurrency=48,
    bcrypt_rounds=12,
)

# Tiny sizes: an 11 MiB file (three parts, the last one short), a few requests.
SMOKE = replace(
    # Few connections: the smoke test's stack shares the test suite's PostgreSQL server.
    FULL,
    name="smoke",
    rounds=1,
    file_size=11 * MIB,
    load_concurrency=4,
    load_seconds=0.5,
    serial_seconds=0.3,
    warmup_seconds=0.1,
    initiations=(("1 GiB", 205, 2), ("48.8 GiB", 10_000, 1)),
    event_uploads=1,
    bcrypt_seconds=0.3,
    storm_seconds=1.0,
    storm_concurrency=2,
    flood_concurrency=4,
    bcrypt_rounds=10,
    load_small_uploads=8,
    load_large_uploads=2,
    load_large_size=6 * MIB,
    load_burst_uploads=8,
    wan_file_size=11 * MIB,
    browser_file_size=11 * MIB,
    streams=50,
    stream_connections=2,
    stream_changes=10,
    listing_rows=2000,
    listing_users=10,
    listing_big_user_rows=500,
    listing_medium_user_rows=100,
    listing_samples=5,
)

PROFILES = {"full": FULL, "smoke": SMOKE}
