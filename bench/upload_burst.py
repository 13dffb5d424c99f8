"""The load generator of section 7's bursts, run as its own process
(`python -m bench.upload_burst < spec.json`) so that it never shares a GIL with the bench or
the servers. It prints one JSON object: each upload's seconds, the wall time, the errors,
and the CPU seconds it spent itself.

Many uploads at once as cheaply as a client can make them: one asyncio loop (uvloop), raw
HTTP/1.1 on keep-alive connections shared by every upload (a pool per host, at most
`connections` each), no thread per upload. Flows (`flow`):
- "v2": the SDK's (the product's best client) for a file of one part: a single PUT,
  POST /api/v2/files (CRC32C, singlePut with the file's checksum: the reply has the URL),
  PUT with the signed checksum header (storage verifies it), complete (which confirms).
- "v2-multipart": the SDK's before single PUTs: POST /api/v2/files (CRC32C), part-urls
  with the part's checksum, PUT with the signed checksum header, record the part,
  complete.
- "v1": the browser client's original one: get-upload-urls, PUT, record-chunk,
  complete-upload.
- "put": no Dropfile at all: each object PUT straight to the store, signed by botocore
  (a presigned put_object with its CRC32C, as put_object sends it) from the same loop and
  connections: the baseline.
A Dropfile upload ends when its status is UPLOADED. No polling: one Server-Sent Events
stream per account (GET /api/v2/events), opened before the burst, says when; a stream
that ends is opened again and the account's files listed (events are not replayed). At
the end every account's files are listed, and each upload must be there UPLOADED with its
size: anything else, or any HTTP error, is an error. Bodies and their checksums are made
before the clock starts (a real client reads them from its disk)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# A connection idle longer than this is not reused: the gateway closes idle keep-alive
# connections after 5 s (HTTP_KEEP_ALIVE_SECONDS), and a request sent as it closes is lost.
IDLE_REUSE_SECONDS = 4.0
READ_LIMIT = 1 << 20


class BurstError(RuntimeError):
    pass


def _now() -> float:
    return time.perf_counter()


# -- HTTP/1.1 -------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = _now()
        self.used = False

    def close(self) -> None:
        self.writer.close()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body; b"" at its end (after the trailer)."""
    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
    if size == 0:
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass
        return b""
    data = await reader.readexactly(size)
    await reader.readexactly(2)
    return data


class Pool:
    """Keep-alive connections to one host:port, at most `limit` open; shared by every task."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self.opened = 0
        self.retried = 0

    async def _connection(self) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            if _now() - conn.idle_since < IDLE_REUSE_SECONDS:
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=READ_LIMIT)
        self.opened += 1
        return Connection(reader, writer)

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> Response:
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        async with self._slots:
            for attempt in (1, 2):
                conn = await self._connection()
                reused = conn.used
                try:
                    conn.writer.write(data)
                    if body:
                        conn.writer.write(body)
                    status, reply_headers = await read_head(conn.reader)
                except (OSError, asyncio.IncompleteReadError):
                    conn.close()
                    # A reused connection the server closed as the request went out (nothing
                    # of a response came back): sent again once on a new one, as browsers do.
                    if reused and attempt == 1:
                        self.retried += 1
                        continue
                    raise
                try:
                    if reply_headers.get("transfer-encoding", "").lower() == "chunked":
                        chunks = []
                        while chunk := await read_chunk(conn.reader):
                            chunks.append(chunk)
                        content = b"".join(chunks)
                    else:
                        length = int(reply_headers.get("content-length", "0"))
                        content = await conn.reader.readexactly(length) if length else b""
                except BaseException:
                    conn.close()
                    raise
                if reply_headers.get("connection", "").lower() == "close":
                    conn.close()
                else:
                    conn.used, conn.idle_since = True, _now()
                    self._idle.append(conn)
                return Response(status, reply_headers, content)
        raise AssertionError("unreachable")


class Client:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.pools: dict[tuple[str, int], Pool] = {}

    def pool(self, host: str, port: int) -> Pool:
        key = (host, port)
        if key not in self.pools:
            self.pools[key] = Pool(host, port, self._limit)
        return self.pools[key]

    async def call(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        expect: tuple[int, ...] = (200,),
    ) -> Response:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        reply = await self.pool(parts.hostname or "", parts.port or 80).request(
            method, target, headers or {}, body
        )
        if reply.status not in expect:
            raise BurstError(f"{method} {parts.path}: HTTP {reply.status} {reply.body[:300]!r}")
        return reply


def json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# -- UPLOADED, from each account's event stream ---------------------------------------------


@dataclass
class Account:
    token: str
    files: dict[str, int] = field(default_factory=dict)  # file id -> size

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"access_token={self.token}"}


class Uploaded:
    """When each file was seen UPLOADED (an event, else a listing)."""

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self.reopened = 0
        self.by_listing = 0
        # (started, completed: complete's answer, seen UPLOADED) of each upload.
        self.completions: list[tuple[float, float, float]] = []

    def waiter(self, file_id: str) -> asyncio.Future[float]:
        if file_id not in self._waiters:
            self._waiters[file_id] = asyncio.get_running_loop().create_future()
        return self._waiters[file_id]

    def seen(self, file_id: str, *, listed: bool = False) -> None:
        future = self.waiter(file_id)
        if not future.done():
            future.set_result(_now())
            self.by_listing += listed

    def failed(self, file_id: str, why: str) -> None:
        future = self.waiter(file_id)
        if not future.done():
            future.set_exception(BurstError(f"file {file_id}: {why}"))


async def list_files(client: Client, gateway: str, account: Account) -> list[dict[str, Any]]:
    files, token = [], None
    while True:
        query = "pageSize=1000" + (f"&pageToken={token}" if token else "")
        page = (
            await client.call("GET", f"{gateway}/api/v2/files?{query}", headers=account.headers)
        ).json()
        files += page["files"]
        token = page.get("nextPageToken")
        if not token:
            return files


def _fields(file: dict[str, Any]) -> tuple[str, str]:
    return str(file.get("fileId") or file.get("id")), str(file.get("status"))


async def watch(gateway: str, account: Account, uploaded: Uploaded, live: asyncio.Event) -> None:
    """Follows the account's event stream for ever (cancelled at the end), opening it
    again when it ends; `live` is set once it first answers."""
    parts = urlsplit(gateway)
    first = True
    while True:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=READ_LIMIT)
        try:
            writer.write(
                (
                    f"GET /api/v2/events HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                    f"Cookie: access_token={account.token}\r\nAccept: text/event-stream\r\n\r\n"
                ).encode("latin-1")
            )
            status, headers = await read_head(reader)
            if status != 200 or headers.get("transfer-encoding", "").lower() != "chunked":
                raise BurstError(f"GET /api/v2/events: HTTP {status}")
            if not first:
                # Events are not replayed: what changed while no stream was open is listed.
                uploaded.reopened += 1
                for file in await list_files(Client(1), gateway, account):
                    file_id, status_name = _fields(file)
                    if file_id in account.files and status_name == "UPLOADED":
                        uploaded.seen(file_id, listed=True)
            first = False
            live.set()
            buffer = b""
            while chunk := await read_chunk(reader):
                buffer += chunk
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    _dispatch(event, account, uploaded)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            await asyncio.sleep(0.2)
        finally:
            writer.close()


def _dispatch(event: bytes, account: Account, uploaded: Uploaded) -> None:
    name, data = "", b""
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data += line[5:].strip()
    if name != "file" or not data:
        return
    change = json.loads(data)
    file_id = change["fileId"]
    if file_id not in account.files:
        return
    if change["status"] == "UPLOADED":
        uploaded.seen(file_id)
    elif change["status"] in ("FAILED", "DELETED"):
        uploaded.failed(file_id, f"status {change['status']}")


# -- the uploads ----------------------------------------------------------------------------


@dataclass
class Body:
    data: bytes
    crc32c: str  # base64, as S3 takes it


def make_bodies(count: int, size: int) -> list[Body]:
    import google_crc32c

    bodies = []
    for _ in range(count):
        data = os.urandom(size)
        digest = google_crc32c.Checksum(data).digest()
        bodies.append(Body(data, base64.b64encode(digest).decode()))
    return bodies


async def upload_v1(
    client: Client, gateway: str, account: Account, file_id: str, body: Body
) -> None:
    size = len(body.data)
    headers = {**account.headers, "Content-Type": "application/json"}
    reply = (
        await client.call(
            "POST",
            f"{gateway}/api/files/get-upload-urls",
            headers=headers,
            body=json_body(
                {
                    "file_id": file_id,
                    "file_name": f"burst-{file_id[:8]}.bin",
                    "file_type": "application/octet-stream",
                    "file_size": str(size),
                }
            ),
        )
    ).json()
    put = await client.call("PUT", reply["presignedUrls"][0], body=body.data)
    etag = put.headers["etag"]
    await client.call(
        "POST",
        f"{gateway}/api/files/record-chunk",
        headers=headers,
        body=json_body(
            {"file_id": file_id, "chunk_index": 0, "size": str(size), "etag": etag.strip('"')}
        ),
    )
    await client.call(
        "POST",
        f"{gateway}/api/files/complete-upload",
        headers=headers,
        body=json_body(
            {
                "uploadId": reply["uploadId"],
                "fileId": file_id,
                "parts": [{"ETag": etag, "PartNumber": 1}],
            }
        ),
    )


async def upload_v2_single_put(
    client: Client, gateway: str, account: Account, file_id: str, body: Body
) -> None:
    headers = {**account.headers, "Content-Type": "application/json"}
    files = f"{gateway}/api/v2/files"
    created = (
        await client.call(
            "POST",
            files,
            headers=headers,
            expect=(201,),
            body=json_body(
                {
                    "fileId": file_id,
                    "fileName": f"burst-{file_id[:8]}.bin",
                    "mimeType": "application/octet-stream",
                    "size": len(body.data),
                    "checksumAlgorithm": "CRC32C",
                    "singlePut": True,
                    "partChecksum": body.crc32c,
                }
            ),
        )
    ).json()
    target = created["putUrl"]
    await client.call("PUT", target["url"], headers=target["headers"], body=body.data)
    await client.call(
        "POST",
        f"{files}/{file_id}/complete",
        headers=headers,
        body=json_body({"uploadId": created["uploadId"]}),
    )


async def upload_v2(
    client: Client, gateway: str, account: Account, file_id: str, body: Body
) -> None:
    size = len(body.data)
    headers = {**account.headers, "Content-Type": "application/json"}
    files = f"{gateway}/api/v2/files"
    created = (
        await client.call(
            "POST",
            files,
            headers=headers,
            expect=(201,),
            body=json_body(
                {
                    "fileId": file_id,
                    "fileName": f"burst-{file_id[:8]}.bin",
                    "mimeType": "application/octet-stream",
                    "size": size,
                    "checksumAlgorithm": "CRC32C",
                }
            ),
        )
    ).json()
    if created["partCount"] != 1:
        raise BurstError(f"{size} bytes came as {created['partCount']} parts")
    (target,) = (
        await client.call(
            "POST",
            f"{files}/{file_id}/part-urls",
            headers=headers,
            body=json_body({"first_part": 1, "last_part": 1, "checksums": [body.crc32c]}),
        )
    ).json()["parts"]
    put = await client.call("PUT", target["url"], headers=target["headers"], body=body.data)
    etag = put.headers["etag"].strip('"')
    await client.call(
        "POST",
        f"{files}/{file_id}/parts",
        headers=headers,
        body=json_body({"partNumber": 1, "size": size, "etag": etag, "checksum": body.crc32c}),
    )
    await client.call(
        "POST",
        f"{files}/{file_id}/complete",
        headers=headers,
        body=json_body({"uploadId": created["uploadId"]}),
    )


FLOWS = {"v2": upload_v2_single_put, "v2-multipart": upload_v2, "v1": upload_v1}


async def timed_upload(
    flow: str,
    client: Client,
    gateway: str,
    account: Account,
    file_id: str,
    body: Body,
    uploaded: Uploaded,
    timeout: float,
) -> float:
    started = _now()
    waiter = uploaded.waiter(file_id)
    await FLOWS[flow](client, gateway, account, file_id, body)
    completed = _now()
    try:
        at = await asyncio.wait_for(asyncio.shield(waiter), timeout)
    except TimeoutError:
        raise BurstError(f"file {file_id} was not UPLOADED within {timeout:.0f} s") from None
    uploaded.completions.append((started, completed, at))
    return at - started


def put_signer(spec: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=spec["endpoint"],
        region_name=spec["region"],
        aws_access_key_id=spec["access_key"],
        aws_secret_access_key=spec["secret_key"],
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    return s3


async def timed_put(client: Client, s3: Any, bucket: str, key: str, body: Body) -> float:
    started = _now()
    url = s3.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": bucket,
            "Key": key,
            "ContentLength": len(body.data),
            "ChecksumCRC32C": body.crc32c,
        },
        ExpiresIn=600,
    )
    await client.call("PUT", url, headers={"x-amz-checksum-crc32c": body.crc32c}, body=body.data)
    return _now() - started


async def gather_all(jobs: list[Awaitable[float]]) -> tuple[list[float], list[str]]:
    seconds, errors = [], []
    for outcome in await asyncio.gather(*jobs, return_exceptions=True):
        if isinstance(outcome, BaseException):
            errors.append(f"{type(outcome).__name__}: {outcome}"[:500])
        else:
            seconds.append(outcome)
    return seconds, errors


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    count, size, flow = spec["count"], spec["size"], spec["flow"]
    bodies = make_bodies(count, size)
    client = Client(spec.get("connections", count))
    result: dict[str, Any] = {"flow": flow, "count": count}
    if flow == "put":
        s3 = put_signer(spec)
        keys = [f"{spec['prefix']}{uuid.uuid4()}" for _ in range(count)]
        cpu_before, started = _cpu(), _now()
        seconds, errors = await gather_all(
            [timed_put(client, s3, spec["bucket"], key, body) for key, body in zip(keys, bodies)]
        )
        wall = _now() - started
        result["keys"] = keys
    else:
        gateway = spec["gateway"]
        accounts = [Account(token) for token in spec["tokens"]]
        uploaded = Uploaded()
        ids = [str(uuid.uuid4()) for _ in range(count)]
        owners = [accounts[i % len(accounts)] for i in range(count)]
        for file_id, owner in zip(ids, owners):
            owner.files[file_id] = size
        lives = [asyncio.Event() for _ in accounts]
        watchers = [
            asyncio.create_task(watch(gateway, account, uploaded, live))
            for account, live in zip(accounts, lives)
        ]
        await asyncio.wait_for(asyncio.gather(*(live.wait() for live in lives)), 60)
        cpu_before, started = _cpu(), _now()
        seconds, errors = await gather_all(
            [
                timed_upload(flow, client, gateway, owner, file_id, body, uploaded, spec["timeout"])
                for file_id, owner, body in zip(ids, owners, bodies)
            ]
        )
        wall = _now() - started
        cpu_after = _cpu()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        # The final word is the list: every upload there, UPLOADED, with its size.
        for account in accounts:
            listed = {_fields(f)[0]: f for f in await list_files(client, gateway, account)}
            for file_id, expected in account.files.items():
                file = listed.get(file_id)
                if file is None or _fields(file)[1] != "UPLOADED" or int(file["size"]) != expected:
                    errors.append(f"file {file_id} listed as {file!r}"[:500])
        result["events"] = {
            "streams_reopened": uploaded.reopened,
            "seen_by_listing": uploaded.by_listing,
        }
        result["cpu_seconds"] = round(cpu_after - cpu_before, 2)
        result["timeline"] = _timeline(uploaded.completions, started)
    if "cpu_seconds" not in result:
        result["cpu_seconds"] = round(_cpu() - cpu_before, 2)
    result.update(
        seconds=seconds,
        wall=wall,
        errors=errors,
        connections_opened=sum(p.opened for p in client.pools.values()),
        requests_resent=sum(p.retried for p in client.pools.values()),
    )
    return result


def _timeline(completions: list[tuple[float, float, float]], started: float) -> dict[str, float]:
    """Where the wall time went: until complete's answers, then storage's confirmation."""
    if not completions:
        return {}
    lags = sorted(seen - completed for _, completed, seen in completions)
    return {
        "last_complete_s": round(max(c for _, c, _ in completions) - started, 2),
        "last_uploaded_s": round(max(s for _, _, s in completions) - started, 2),
        "complete_to_uploaded_p50_s": round(lags[len(lags) // 2], 3),
        "complete_to_uploaded_max_s": round(lags[-1], 3),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    import uvloop

    spec = json.load(sys.stdin)
    # As many sockets as uploads, twice (gateway and store), and the streams.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(uvloop.run(run(spec))))


if __name__ == "__main__":
    main()
