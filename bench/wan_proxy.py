"""A wide-area link on loopback: a TCP proxy that delays every byte by half a round trip in
each direction and paces each direction to a link rate, in a process of its own.

This machine's kernel has no `netem`, so the bench's WAN profile passes client-to-storage
and client-to-gateway traffic through this proxy instead. Each direction is one link shared
by all connections through the proxy (as a real access link is): a chunk leaves when the link
is free, takes `size / rate` to send, and arrives `rtt / 2` later. A connection reads ahead
at most `window` bytes beyond what the far side has taken, so a sender feels the delay and
the rate as back-pressure, as TCP over a real long link would.

    python -m bench.wan_proxy --target 127.0.0.1:8333 --rtt-ms 20 --mbit 1000

prints `listening <port>` once it accepts connections and runs until it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass

READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class LinkProfile:
    rtt_seconds: float
    bits_per_second: float
    # Bytes a connection may hold in flight in one direction (the proxy's read-ahead).
    window_bytes: int = 4 * 1024 * 1024

    @property
    def one_way_seconds(self) -> float:
        return self.rtt_seconds / 2


class Link:
    """One direction of the access link, shared by every connection: serialises chunks at
    the link rate; each chunk is due one one-way delay after it has been sent."""

    def __init__(self, profile: LinkProfile) -> None:
        self._profile = profile
        self._free_at = 0.0

    def due_time(self, size: int) -> float:
        now = time.monotonic()
        start = max(now, self._free_at)
        self._free_at = start + size * 8 / self._profile.bits_per_second
        return self._free_at + self._profile.one_way_seconds


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    link: Link,
    profile: LinkProfile,
) -> None:
    # Counted in reads, not bytes: a read is at most READ_SIZE.
    in_flight = asyncio.Semaphore(max(1, profile.window_bytes // READ_SIZE))
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def deliver() -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
            in_flight.release()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

    delivery = asyncio.create_task(deliver())
    try:
        while True:
            await in_flight.acquire()
            data = await reader.read(READ_SIZE)
            if not data:
                break
            queue.put_nowait((link.due_time(len(data)), data))
    except (ConnectionError, OSError):
        pass
    finally:
        queue.put_nowait(None)
        with contextlib.suppress(ConnectionError, OSError):
            await delivery


class WanProxy:
    def __init__(self, target: tuple[str, int], profile: LinkProfile) -> None:
        self._target = target
        self._profile = profile
        self._upstream_link = Link(profile)
        self._downstream_link = Link(profile)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                _pump(client_r, server_w, self._upstream_link, self._profile),
                _pump(server_r, client_w, self._downstream_link, self._profile),
            )
        finally:
            for writer in (client_w, server_w):
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

    async def serve(self, port: int = 0) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        bound = server.sockets[0].getsockname()[1]
        print(f"listening {bound}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()


def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise argparse.ArgumentTypeError("the proxy only forwards to loopback")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=_target, required=True, help="127.0.0.1:PORT")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--mbit", type=float, default=1000.0, help="link rate per direction")
    parser.add_argument("--window-mib", type=float, default=4.0)
    args = parser.parse_args(argv)
    profile = LinkProfile(
        rtt_seconds=args.rtt_ms / 1000,
        bits_per_second=args.mbit * 1e6,
        window_bytes=int(args.window_mib * 1024 * 1024),
    )
    try:
        import uvloop  # uvicorn[standard] brings it: a cheaper event loop for the copying

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(WanProxy(args.target, profile).serve(args.port))


if __name__ == "__main__":
    sys.exit(main())
