"""10. A million files: listing at scale.

`listing_rows` file rows (1,000,000) over `listing_users` users (1,000), one of whom holds
`listing_big_user_rows` (100,000) and another `listing_medium_user_rows` (1,000), are
COPYed straight into the main stack's PostgreSQL: rows as uploads leave them (UPLOADED,
with storage keys `users/<user>/<file>`, ETags, completion times), created over a few
hours, the users' files interleaved in time. The two users who list are real accounts
(signed up through the gateway); the others exist only as owners of rows. Then, through
the main gateway over HTTP, one request at a time:

- v2's first page (`GET /api/v2/files`, 100 files) of the 100,000-file user: p50, p99
  (target p50 < 10 ms);
- the same with a name filter that few of the user's files match, and a page 50,000
  files deep (a page token from there): p50, for information;
- v1's whole list (`GET /api/files/list`) of the 1,000-file user: p50, p99 (target
  p50 < 30 ms);
- v1's whole list of the 100,000-file user (streamed from pages of 1,000), and v2 paged
  to the end (pages of 1,000): seconds each, while the upload coordinator's and the
  gateway's resident memory is sampled every 5 ms (target: the coordinator under 150 MB).
  VmRSS is sampled rather than VmHWM read, since VmHWM holds the peak of the whole run.
"""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg2

from .api import Account, api_client, sign_up
from .config import BenchConfig
from .stack import BenchStack
from .stats import Results, Row, percentile

SECTION = "Listing"
COPY_COLUMNS = (
    "id, user_id, file_name, mime_type, size, s3_key, upload_id, part_size, part_count, "
    "status, etag, created_at, updated_at, completed_at, uploaded_at"
)
# A text few names hold: one in 1,000 files is named "invoice-<n> quarterly.pdf".
RARE_NAME = "quarterly"
NAME_PATTERNS = (
    ("IMG_{n:07d}.jpg", "image/jpeg"),
    ("report-{n}.pdf", "application/pdf"),
    ("notes {n}.txt", "text/plain"),
    ("Screenshot {n}.png", "image/png"),
    ("backup-{n}.tar.gz", "application/gzip"),
    ("Résumé {n}.docx", "application/octet-stream"),
)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
# Time between consecutive rows: 1,000,000 rows span about 8 hours.
ROW_STEP = timedelta(milliseconds=29)
SAMPLE_SECONDS = 0.005


class ListingError(RuntimeError):
    pass


def user_id_of(account: Account) -> str:
    """The account's user id: its access token's subject (read, not verified)."""
    payload = account.access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


def owners(config: BenchConfig, big: str, medium: str, seed: int = 7) -> list[str]:
    """The owner of each row, in creation order: the big and the medium user's files
    spread among everyone else's."""
    others = [
        str(uuid.UUID(int=random.Random(seed + i).getrandbits(128), version=4))
        for i in range(config.listing_users - 2)
    ]
    rest = config.listing_rows - config.listing_big_user_rows - config.listing_medium_user_rows
    if rest < 0 or not others:
        raise ListingError("listing rows: fewer rows than the two listing users hold")
    owned = (
        [big] * config.listing_big_user_rows
        + [medium] * config.listing_medium_user_rows
        + [others[i % len(others)] for i in range(rest)]
    )
    random.Random(seed).shuffle(owned)
    return owned


def csv_rows(owned: list[str]) -> Iterator[bytes]:
    """COPY's CSV, a batch of rows at a time."""
    batch: list[str] = []
    rng = random.Random(11)
    for index, user in enumerate(owned):
        file_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        if index % 1000 == 500:
            name, mime = f"invoice-{index} {RARE_NAME}.pdf", "application/pdf"
        else:
            pattern, mime = NAME_PATTERNS[index % len(NAME_PATTERNS)]
            name = pattern.format(n=index)
        created = (T0 + ROW_STEP * index + timedelta(microseconds=rng.randrange(1000))).isoformat()
        batch.append(
            f'{file_id},{user},"{name}",{mime},{rng.randrange(1, 1 << 30)},'
            f"users/{user}/{file_id},bench-{file_id.hex},5242880,1,UPLOADED,"
            f"{file_id.hex},{created},{created},{created},{created}\n"
        )
        if len(batch) == 10_000:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


class ChunkReader(io.RawIOBase):
    """A file-like object over an iterator of bytes, for COPY ... FROM STDIN."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return b""
        if size < 0:
            size = len(self._left)
        out, self._left = self._left[:size], self._left[size:]
        return out


def load(db_url: str, owned: list[str]) -> float:
    """COPYs the rows and analyzes the table; returns the seconds it took."""
    started = time.monotonic()
    conn = psycopg2.connect(db_url)
    try:
        with conn, conn.cursor() as cur:
            cur.copy_expert(
                f"COPY files ({COPY_COLUMNS}) FROM STDIN WITH (FORMAT csv)",
                ChunkReader(csv_rows(owned)),
                size=1 << 20,
            )
        conn.autocommit = True
        with conn.cursor() as cur:
            # Fresh statistics, and the visibility map index-only scans rely on.
            cur.execute("VACUUM ANALYZE files")
    finally:
        conn.close()
    return time.monotonic() - started


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ListingError(f"no VmRSS for process {pid}")


class RssSampler:
    """The largest resident size of some processes while the block runs."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peaks = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            self.peaks[name] = max(self.peaks[name], rss_bytes(pid))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def timed_get(client: httpx.Client, path: str, params: dict | None = None) -> tuple[float, dict]:
    started = time.perf_counter()
    reply = client.get(path, params=params)
    elapsed = time.perf_counter() - started
    if reply.status_code != 200:
        raise ListingError(f"GET {path}: HTTP {reply.status_code} {reply.text[:200]}")
    return elapsed * 1000, reply.json()


def latencies(client: httpx.Client, path: str, params: dict | None, count: int) -> list[float]:
    for _ in range(max(3, count // 10)):  # warm-up: connections, plans, caches
        timed_get(client, path, params)
    return [timed_get(client, path, params)[0] for _ in range(count)]


def pid_of(stack: BenchStack, name: str) -> int:
    for process in stack.processes:
        if process.name == name:
            return process.popen.pid
    raise ListingError(f"no process {name}")


def _row(results: Results, row_id: str, name: str, unit: str, chart: str | None = None) -> Row:
    return results.add(Row(row_id, SECTION, name, unit, chart=chart))


def measure(stack: BenchStack, config: BenchConfig, results: Results, say) -> None:
    gateway = stack.endpoints.gateway
    big_n, medium_n = config.listing_big_user_rows, config.listing_medium_user_rows
    loaded = _row(results, "listing.load.rate", f"COPY {config.listing_rows:,} file rows", "rows/s")
    first_p50 = _row(
        results,
        "listing.v2.first_page.p50",
        f"v2 first page (100) of a {big_n:,}-file user: p50",
        "ms",
        chart="Listing: ms",
    )
    first_p99 = _row(
        results,
        "listing.v2.first_page.p99",
        f"v2 first page (100) of a {big_n:,}-file user: p99",
        "ms",
        chart="Listing: ms",
    )
    filtered = _row(
        results,
        "listing.v2.filtered.p50",
        f"v2 first page, name filter matching 1 in 1,000 of {big_n:,}: p50",
        "ms",
        chart="Listing: ms",
    )
    deep = _row(
        results,
        "listing.v2.deep_page.p50",
        f"v2 page {big_n // 2:,} files deep: p50",
        "ms",
        chart="Listing: ms",
    )
    v1_p50 = _row(
        results,
        "listing.v1.medium.p50",
        f"v1 list of a {medium_n:,}-file user: p50",
        "ms",
        chart="Listing: ms",
    )
    v1_p99 = _row(
        results,
        "listing.v1.medium.p99",
        f"v1 list of a {medium_n:,}-file user: p99",
        "ms",
        chart="Listing: ms",
    )
    v1_big = _row(
        results,
        "listing.v1.big.seconds",
        f"v1 list of the {big_n:,}-file user, streamed",
        "s",
        chart="Listing: s",
    )
    v2_all = _row(
        results,
        "listing.v2.all_pages.seconds",
        f"v2 paged to the end (1,000 a page), {big_n:,}-file user",
        "s",
        chart="Listing: s",
    )
    upload_rss = _row(
        results,
        "listing.memory.upload",
        f"upload coordinator: largest RSS while the {big_n:,}-file user lists",
        "MB",
        chart="Listing: MB",
    )
    gateway_rss = _row(
        results,
        "listing.memory.gateway",
        f"gateway: largest RSS while the {big_n:,}-file user lists",
        "MB",
        chart="Listing: MB",
    )

    big, medium = sign_up(gateway, "bench-list-big"), sign_up(gateway, "bench-list-medium")
    owned = owners(config, user_id_of(big), user_id_of(medium))
    seconds = load(stack.endpoints.db_main, owned)
    loaded.samples.append(config.listing_rows / seconds)
    say(f"  loaded {config.listing_rows:,} rows in {seconds:.1f} s")
    # Fresh tokens: the load may have taken a good part of an access token's 15 minutes.
    big, medium = _signed_in(gateway, big), _signed_in(gateway, medium)
    samples = config.listing_samples

    with api_client(gateway, big) as client, api_client(gateway, medium) as medium_client:
        first = latencies(client, "/api/v2/files", None, samples)
        first_p50.samples.append(percentile(first, 50))
        first_p99.samples.append(percentile(first, 99))
        _, page = timed_get(client, "/api/v2/files", {"name": RARE_NAME})
        if any(RARE_NAME not in f["fileName"] for f in page["files"]):
            raise ListingError("the name filter answered files without the text")
        filtered.samples.append(
            percentile(latencies(client, "/api/v2/files", {"name": RARE_NAME}, samples), 50)
        )
        token = _token_at(client, big_n // 2)
        deep.samples.append(
            percentile(latencies(client, "/api/v2/files", {"pageToken": token}, samples), 50)
        )
        _, listed = timed_get(medium_client, "/api/files/list")
        if len(listed["files"]) != medium_n:
            raise ListingError(f"v1 listed {len(listed['files'])} of {medium_n} files")
        v1 = latencies(medium_client, "/api/files/list", None, samples)
        v1_p50.samples.append(percentile(v1, 50))
        v1_p99.samples.append(percentile(v1, 99))
        say(
            f"  v2 first page p50 {first_p50.samples[-1]:.1f} ms, filtered "
            f"{filtered.samples[-1]:.1f} ms, deep {deep.samples[-1]:.1f} ms; "
            f"v1 {medium_n:,} files p50 {v1_p50.samples[-1]:.1f} ms"
        )

        pids = {"upload": pid_of(stack, "upload"), "gateway": pid_of(stack, "gateway")}
        with RssSampler(pids) as sampler:
            v1_seconds, count = _stream_v1(client)
            if count != big_n:
                raise ListingError(f"v1 streamed {count} of {big_n} files")
            v2_seconds, count = _page_to_the_end(client)
            if count != big_n:
                raise ListingError(f"v2 paged {count} of {big_n} files")
        v1_big.samples.append(v1_seconds)
        v2_all.samples.append(v2_seconds)
        upload_rss.samples.append(sampler.peaks["upload"] / 1e6)
        gateway_rss.samples.append(sampler.peaks["gateway"] / 1e6)
        say(
            f"  {big_n:,} files: v1 streamed in {v1_seconds:.2f} s, v2 paged in "
            f"{v2_seconds:.2f} s; largest RSS: upload {upload_rss.samples[-1]:.0f} MB, "
            f"gateway {gateway_rss.samples[-1]:.0f} MB"
        )


def _signed_in(gateway: str, account: Account) -> Account:
    with httpx.Client(base_url=gateway, timeout=60) as client:
        reply = client.post(
            "/api/auth/signin",
            json={"user": {"email": account.email, "password": account.password}},
        )
        reply.raise_for_status()
        return Account(account.email, account.password, client.cookies["access_token"])


def _token_at(client: httpx.Client, depth: int) -> str:
    """The page token of the position `depth` files into the list."""
    token, seen = None, 0
    while seen < depth:
        params = {"pageSize": min(1000, depth - seen)}
        if token:
            params["pageToken"] = token
        _, page = timed_get(client, "/api/v2/files", params)
        seen += len(page["files"])
        token = page["nextPageToken"]
        if not token:
            raise ListingError(f"the list ended after {seen} files")
    return token


def _stream_v1(client: httpx.Client) -> tuple[float, int]:
    """v1's whole list, read as it arrives; (seconds, files)."""
    started = time.perf_counter()
    with client.stream("GET", "/api/files/list") as reply:
        if reply.status_code != 200:
            raise ListingError(f"v1 list: HTTP {reply.status_code}")
        body = b"".join(reply.iter_bytes())
    elapsed = time.perf_counter() - started
    return elapsed, len(json.loads(body)["files"])


def _page_to_the_end(client: httpx.Client) -> tuple[float, int]:
    started = time.perf_counter()
    token, count = None, 0
    while True:
        params: dict = {"pageSize": 1000}
        if token:
            params["pageToken"] = token
        _, page = timed_get(client, "/api/v2/files", params)
        count += len(page["files"])
        token = page["nextPageToken"]
        if not token:
            return time.perf_counter() - started, count
