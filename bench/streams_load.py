"""The streams section's load generator, a process of its own (bench/streams.py runs it):
`python -m bench.streams_load (--gateway URL | --target HOST:PORT) --key PEM --redis URL
--streams N ...`.

With `--gateway` it opens N Server-Sent-Events streams (GET /api/v2/events) through a
gateway, each on a TCP connection of its own as a browser's EventSource holds it, read with
plain asyncio streams (an HTTP client per stream would cost this process far more than the
gateway). With `--target` it opens N WatchFileEvents streams with grpc.aio, straight to one
events process, spread over `--connections` connections. Either way the streams are spread
over users, `--per-user` streams each (the per-user cap,
WATCH_MAX_STREAMS_PER_USER); access tokens are minted with the stack's key (development
keys under DROPFILE_KEYS_DIR), one device session per user, so no account needs signing
up. Once every stream is live (its first heartbeat) it prints `{"event": "open", ...}` and
waits for a line `go` on stdin; then it publishes `--changes` status changes on Redis as
the upload coordinator does, each for the next user in turn, `--interval` seconds apart,
and times each from just before its PUBLISH to its arrival on every stream of its user
(one clock: this process), and prints `{"event": "done", ...}`. A line `stop` (or EOF)
closes every stream and ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import grpc
import jwt
import redis.asyncio

from dropfile.events.v1 import events_pb2, events_pb2_grpc
from services.common.file_events import FileStatusChange, channel_of

HEARTBEAT_SECONDS = 15  # the gateway's default (SSE_HEARTBEAT_SECONDS)
# Streams opening at once: a realistic ramp rather than one SYN flood.
OPENING_AT_ONCE = 500
WAIT_FOR_ARRIVALS_SECONDS = 30.0


def raise_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def mint(private_pem: str, user_id: str, session_id: str) -> str:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "email": f"{user_id[:8]}@bench.example.com",
        "sid": session_id,
        "iat": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
        "iss": "dropfile-auth",
        "aud": "dropfile",
    }
    return jwt.encode(claims, private_pem, algorithm="RS256")


def say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Streams:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        private_pem = Path(args.key).read_text()
        users = -(-args.streams // args.per_user)
        self.users = [str(uuid.uuid4()) for _ in range(users)]
        self.tokens = {u: mint(private_pem, u, str(uuid.uuid4())) for u in self.users}
        self.owners = [self.users[n % users] for n in range(args.streams)]
        self.streams_of = defaultdict(int)
        for owner in self.owners:
            self.streams_of[owner] += 1
        # Separate connections: without a local subchannel pool, channels to one target
        # share one. (None through a gateway: each SSE client has its own connection.)
        self.channels = [
            grpc.aio.insecure_channel(args.target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(args.connections if args.target else 0)
        ]
        self.stubs = [events_pb2_grpc.EventsServiceStub(c) for c in self.channels]
        self.live = 0
        self.all_live = asyncio.Event()
        self.errors: dict[str, int] = defaultdict(int)
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.arrived = asyncio.Event()
        self.expected: dict[str, int] = {}
        self.opening = asyncio.Semaphore(OPENING_AT_ONCE)
        self.tasks: list[asyncio.Task[None]] = []

    def _arrived(self, file_id: str) -> None:
        self.arrivals[file_id].append(time.perf_counter())
        if len(self.arrivals[file_id]) == self.expected.get(file_id):
            self.arrived.set()

    def _live(self) -> None:
        self.live += 1
        if self.live == len(self.owners):
            self.all_live.set()

    def _settled(self) -> None:
        if self.live + sum(self.errors.values()) >= len(self.owners):
            self.all_live.set()

    async def _watch_sse(self, index: int) -> None:
        """One browser's EventSource: GET /api/v2/events with its cookie, on a connection of
        its own (HTTP/1.1, as browsers hold SSE), read line by line. Live once the
        response's `: live` preamble arrives; each `data:` line is a change."""
        owner = self.owners[index]
        await self.opening.acquire()
        opened = False
        writer: asyncio.StreamWriter | None = None
        try:
            host, port = self.args.gateway.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                (
                    f"GET /api/v2/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Accept: text/event-stream\r\nCookie: access_token={self.tokens[owner]}"
                    "\r\n\r\n"
                ).encode()
            )
            status = (await reader.readline()).split(b" ", 2)
            if len(status) < 2 or status[1] != b"200":
                self.errors[f"HTTP {status[1].decode() if len(status) > 1 else '?'}"] += 1
                return
            while line := await reader.readline():
                if line.startswith(b"data:"):
                    self._arrived(json.loads(line[5:])["fileId"])
                elif not opened and line.startswith(b": live"):
                    opened = True
                    self.opening.release()
                    self._live()
            if not opened:
                self.errors["ended before live"] += 1
        except OSError as exc:
            self.errors[type(exc).__name__] += 1
        finally:
            if not opened:
                self.opening.release()
                self._settled()
            if writer is not None:
                writer.close()

    async def _watch(self, index: int) -> None:
        owner = self.owners[index]
        stub = self.stubs[index % len(self.stubs)]
        await self.opening.acquire()
        opened = failed = False
        try:
            call = stub.WatchFileEvents(
                events_pb2.WatchFileEventsRequest(heartbeat_seconds=HEARTBEAT_SECONDS),
                metadata=(("authorization", f"Bearer {self.tokens[owner]}"),),
            )
            async for reply in call:
                if reply.HasField("file_event"):
                    self._arrived(reply.file_event.file_id)
                elif not opened:
                    opened = True
                    self.opening.release()
                    self._live()
        except grpc.aio.AioRpcError as exc:
            failed = True
            self.errors[exc.code().name] += 1
        finally:
            if not opened:
                self.opening.release()
                if not failed:
                    self.errors["ended before live"] += 1
                self._settled()

    async def open(self) -> float:
        started = time.perf_counter()
        watch = self._watch_sse if self.args.gateway else self._watch
        self.tasks = [asyncio.create_task(watch(n)) for n in range(len(self.owners))]
        await self.all_live.wait()
        return time.perf_counter() - started

    async def publish(self) -> tuple[list[float], list[float], int]:
        """(per change: ms until the last of its user's streams had it; per delivery: ms;
        changes that did not reach all their streams)."""
        client = redis.asyncio.Redis.from_url(self.args.redis, decode_responses=True)
        sent: dict[str, float] = {}
        try:
            for n in range(self.args.changes):
                user = self.users[n % len(self.users)]
                file_id = f"bench-{n}-{uuid.uuid4().hex[:8]}"
                self.expected[file_id] = self.streams_of[user]
                change = FileStatusChange(
                    file_id=file_id, status="UPLOADED", size=1, at=datetime.now(UTC)
                )
                payload = change.to_json()
                sent[file_id] = time.perf_counter()
                await client.publish(channel_of(user), payload)
                await asyncio.sleep(self.args.interval)
        finally:
            await client.aclose()
        deadline = time.perf_counter() + WAIT_FOR_ARRIVALS_SECONDS
        while time.perf_counter() < deadline and any(
            len(self.arrivals[f]) < self.expected[f] for f in sent
        ):
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), 0.5)
            except TimeoutError:
                pass
        changes, deliveries, missing = [], [], 0
        for file_id, at in sent.items():
            times = self.arrivals[file_id]
            deliveries.extend((t - at) * 1000 for t in times)
            if len(times) < self.expected[file_id]:
                missing += 1
            elif times:
                changes.append((max(times) - at) * 1000)
        return changes, deliveries, missing

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels:
            await channel.close()


async def run(args: argparse.Namespace) -> None:
    raise_open_files_limit((args.streams if args.gateway else args.connections) + 1024)
    streams = Streams(args)
    loop = asyncio.get_running_loop()
    try:
        seconds = await streams.open()
        # The streams live until the end: out of this process's collector, which would
        # otherwise pause now and then over all of them and add its pauses to the latencies
        # measured here (they are the events process's to show, not ours).
        gc.collect()
        gc.freeze()
        gc.disable()
        say(
            "open",
            seconds=seconds,
            live=streams.live,
            users=len(streams.users),
            errors=dict(streams.errors),
        )
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "go":
                changes, deliveries, missing = await streams.publish()
                say(
                    "done",
                    changes_ms=changes,
                    deliveries_ms=deliveries,
                    missing=missing,
                    live=streams.live,
                    errors=dict(streams.errors),
                )
            else:  # "stop" or EOF
                break
    finally:
        await streams.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streams_load", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", help="an events process: WatchFileEvents streams")
    where.add_argument("--gateway", help="a gateway's base URL: SSE streams (GET /api/v2/events)")
    parser.add_argument("--key", required=True, help="the stack's JWT private key (PEM file)")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--per-user", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.01)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
