"""The WAN profile's delaying proxy (bench/wan_proxy.py), in its own process as the bench
runs it, in front of a real TCP echo server: it carries every byte unchanged both ways, and
it adds its round trip and holds its rate. Only lower bounds are asserted (a delay or a rate
limit can only make things slower; how much slower is the bench's to measure)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    listener.close()


def start_proxy(target_port: int, *extra: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.wan_proxy", "--target", f"127.0.0.1:{target_port}", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("listening "), process.stderr.read() if process.stderr else line
    return process, int(line.split()[1])


@pytest.fixture
def proxy(echo_port: int) -> Iterator[int]:
    process, port = start_proxy(echo_port, "--rtt-ms", "40", "--mbit", "80")
    yield port
    process.terminate()
    process.wait(timeout=10)


def exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        received = bytearray()
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            assert chunk, "the proxy closed the connection early"
            received += chunk
        sender.join()
        return bytes(received)


def test_every_byte_crosses_unchanged_both_ways(proxy: int) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    assert exchange(proxy, payload) == payload


def test_a_request_and_its_answer_take_at_least_the_round_trip(proxy: int) -> None:
    with socket.create_connection(("127.0.0.1", proxy), timeout=30) as sock:
        sock.sendall(b"warm")
        assert sock.recv(16) == b"warm"
        for _ in range(5):
            started = time.monotonic()
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"
            assert time.monotonic() - started >= 0.040


def test_the_link_rate_holds(proxy: int) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    started = time.monotonic()
    assert exchange(proxy, payload) == payload
    # 2 MiB each way at 80 Mbit/s is at least 0.21 s on each link, which overlap.
    assert time.monotonic() - started >= len(payload) * 8 / 80e6


def test_it_forwards_only_to_loopback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.wan_proxy", "--target", "192.0.2.1:80"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "loopback" in result.stderr


def test_it_stops_on_sigterm(echo_port: int) -> None:
    process, port = start_proxy(echo_port)
    assert exchange(port, b"hello") == b"hello"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
