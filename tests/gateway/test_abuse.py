"""The edge holds under abuse (issue #14, items 6 and 7), over real sockets against a real
gateway: a request's headers or body trickled a byte at a time is cut off, connections
beyond the cap are refused at once, one session's flood of part records neither delays
another user's record nor grows without bound, and one user's live-status streams beyond
the limit close their oldest instead of refusing others."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest

from gateway.http_protocol import BUSY, HEADERS_TOO_LARGE, HEADERS_TOO_SLOW
from gateway.middleware import BODY_TOO_SLOW
from gateway.part_recorder import TOO_MANY_WAITING
from tests.conftest import wait_until
from tests.fixtures.gateway import serve_gateway

from .test_live_events import SseStream
from .test_part_recorder import record_parts_calls
from .test_v2_uploads import create

MIB = 1024 * 1024
LIMIT_SECONDS = 1.0  # the test gateway's header and body deadlines
GIVE_UP_SECONDS = 8.0  # how long an attacker keeps trickling here if nobody cuts it off


@pytest.fixture(scope="module")
def strict_gateway(gateway_settings) -> Iterator[str]:
    settings = gateway_settings.model_copy(
        update={
            "http_header_timeout_seconds": LIMIT_SECONDS,
            "http_body_timeout_seconds": LIMIT_SECONDS,
        }
    )
    with serve_gateway(settings) as url:
        yield url


def connect(url: str) -> socket.socket:
    parsed = urlparse(url)
    return socket.create_connection((parsed.hostname, parsed.port), timeout=10)


def answer_of(sock: socket.socket, wait: float) -> tuple[bytes, bool]:
    """What the server sends within `wait` s, and whether it closed the connection."""
    received = b""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


def trickle(
    sock: socket.socket, payload: bytes, interval: float = 0.1
) -> tuple[float, bytes, bool]:
    """Sends `payload` a byte every `interval` s, as a slowloris does, until the server
    answers or GIVE_UP_SECONDS pass: (seconds taken, the answer, whether it closed)."""
    started = time.monotonic()
    for byte in payload:
        if time.monotonic() - started > GIVE_UP_SECONDS:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started, b"", True
        if select.select([sock], [], [], interval)[0]:
            answer, closed = answer_of(sock, 2.0)
            return time.monotonic() - started, answer, closed
    return time.monotonic() - started, b"", False


def error_of(answer: bytes) -> str:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


def code_of(answer: bytes) -> str:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"]


@pytest.mark.slow
def test_headers_sent_a_byte_at_a_time_are_cut_off(strict_gateway):
    with connect(strict_gateway) as sock:
        taken, answer, closed = trickle(
            sock, b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + b"a" * 200
        )
    assert closed and taken < LIMIT_SECONDS + 3, (taken, answer)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert error_of(answer) == HEADERS_TOO_SLOW
    assert code_of(answer) == "REQUEST_TIMEOUT"


@pytest.mark.slow
def test_a_connection_that_never_sends_a_request_is_closed(strict_gateway):
    with connect(strict_gateway) as sock:
        answer, closed = answer_of(sock, LIMIT_SECONDS + 3)
    assert closed and answer == b""


@pytest.mark.slow
def test_a_body_sent_a_byte_at_a_time_is_cut_off(strict_gateway):
    body = json.dumps({"user": {"email": "slow@example.com", "password": "p" * 60}}).encode()
    with connect(strict_gateway) as sock:
        sock.sendall(
            b"POST /api/auth/signin HTTP/1.1\r\nHost: gateway\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        taken, answer, closed = trickle(sock, body)
    assert closed and taken < LIMIT_SECONDS + 3, (taken, answer)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert error_of(answer) == BODY_TOO_SLOW
    assert code_of(answer) == "REQUEST_TIMEOUT"


def test_a_prompt_request_on_the_strict_gateway_is_served(strict_gateway):
    with httpx.Client(base_url=strict_gateway) as client:
        assert client.get("/healthz").status_code == 200
        # A keep-alive connection serves one request after another, each with its deadline.
        time.sleep(LIMIT_SECONDS / 2)
        assert client.get("/healthz").status_code == 200


def test_oversized_headers_are_431(strict_gateway):
    with connect(strict_gateway) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
        )
        answer, closed = answer_of(sock, 5)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert error_of(answer) == HEADERS_TOO_LARGE and closed
    assert code_of(answer) == "HEADERS_TOO_LARGE"


def test_connections_beyond_the_cap_are_refused_at_once(gateway_settings):
    settings = gateway_settings.model_copy(update={"http_max_connections": 4})
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
        held = [connect(url) for _ in range(4)]  # idle connections, as an attacker holds
        try:
            started = time.monotonic()
            refused = client.get("/healthz")
            assert refused.status_code == 503
            assert time.monotonic() - started < 2
            assert refused.json() == {"error": BUSY, "code": "SERVER_BUSY"}
            assert refused.headers["retry-after"] == "1"
        finally:
            for sock in held:
                sock.close()
        wait_until(
            lambda: client.get("/healthz").status_code == 200,
            what="the gateway to serve again once the connections closed",
        )


# -- the record queue -----------------------------------------------------------------------


def new_user(url: str) -> httpx.Client:
    from .conftest import sign_up

    client = httpx.Client(base_url=url, timeout=60)
    assert sign_up(client).status_code == 200
    return client


def big_upload(client: httpx.Client, parts: int) -> tuple[str, list[dict]]:
    """A v2 upload of `parts` 5 MiB parts: its id and a batch recording every part."""
    body = create(client, parts * 5 * MIB).json()
    assert body["partSize"] == 5 * MIB
    return body["fileId"], [
        {"partNumber": n, "size": 5 * MIB, "etag": "e"} for n in range(1, parts + 1)
    ]


def flood(
    url: str, cookies: dict, path: str, batch: list[dict], requests: int, answered: list[int]
) -> threading.Thread:
    """Sends `requests` batches at once from a thread; `answered` gets each status."""

    async def main() -> None:
        async with httpx.AsyncClient(
            base_url=url,
            cookies=cookies,
            timeout=120,
            limits=httpx.Limits(max_connections=requests),
        ) as http:

            async def one() -> None:
                answered.append((await http.post(path, json={"parts": batch})).status_code)

            await asyncio.gather(*(one() for _ in range(requests)))

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_one_users_record_flood_does_not_hold_back_anothers_record(gateway_settings):
    # Small batches, one at a time: the flood takes hundreds of RecordParts calls.
    settings = gateway_settings.model_copy(
        update={
            "record_part_batch_size": 4,
            "record_part_batches_in_flight": 1,
            "record_part_max_waiting_per_session": 100_000,
        }
    )
    with serve_gateway(settings) as url:
        flooder, other = new_user(url), new_user(url)
        file_id, batch = big_upload(flooder, 100)
        own_file = create(other, 10).json()["fileId"]
        answered: list[int] = []
        calls_before = record_parts_calls()
        flooding = flood(
            url, dict(flooder.cookies), f"/api/v2/files/{file_id}/parts/batch", batch, 10, answered
        )  # 1,000 records, 250 calls
        wait_until(
            lambda: record_parts_calls() - calls_before >= 25,
            timeout=30,
            what="the flood to be under way",
        )

        started = time.monotonic()
        recorded = other.post(
            f"/api/v2/files/{own_file}/parts", json={"partNumber": 1, "size": 10, "etag": "e"}
        )
        taken = time.monotonic() - started
        flood_answered_by_then = len(answered)
        flooding.join(120)
        assert recorded.status_code == 200, recorded.text
        assert taken < 2.0, f"another user's record waited {taken:.2f} s behind the flood"
        # It was not served after the flood: most of the flood was still waiting.
        assert flood_answered_by_then < 10
        assert answered == [200] * 10


@pytest.mark.slow
def test_a_session_with_too_many_records_waiting_is_told_to_retry(gateway_settings):
    settings = gateway_settings.model_copy(
        update={
            "record_part_batch_size": 1,
            "record_part_batches_in_flight": 1,
            "record_part_max_waiting_per_session": 20,
        }
    )
    with serve_gateway(settings) as url:
        flooder, other = new_user(url), new_user(url)
        file_id, batch = big_upload(flooder, 100)
        own_file = create(other, 10).json()["fileId"]
        answered: list[int] = []
        calls_before = record_parts_calls()
        # 100 records waiting (a session with none waiting is admitted whatever the size).
        flooding = flood(
            url, dict(flooder.cookies), f"/api/v2/files/{file_id}/parts/batch", batch, 1, answered
        )
        wait_until(
            lambda: record_parts_calls() - calls_before >= 2,
            timeout=30,
            what="the batch to be under way",
        )
        more = flooder.post(
            "/api/files/record-chunk",
            json={"file_id": file_id, "chunk_index": 0, "size": str(5 * MIB), "etag": "e"},
        )
        assert more.status_code == 429, more.text
        assert more.json() == {
            "success": False,
            "error": TOO_MANY_WAITING,
            "code": "TOO_MANY_PARTS_WAITING",
        }
        assert more.headers["retry-after"] == "1"
        another = other.post(
            f"/api/v2/files/{own_file}/parts", json={"partNumber": 1, "size": 10, "etag": "e"}
        )
        assert another.status_code == 200, another.text
        flooding.join(120)
        assert answered == [200]
        # Once its records have left, the session is served again.
        again = flooder.post(
            "/api/files/record-chunk",
            json={"file_id": file_id, "chunk_index": 0, "size": str(5 * MIB), "etag": "e"},
        )
        assert again.status_code == 200, again.text


# -- live-status streams ---------------------------------------------------------------------


@pytest.fixture
def sse_gateway(gateway_settings) -> Iterator[str]:
    """To the session's events server (8 streams per user); quick heartbeats, so a stream
    the test closes notices at once."""
    with serve_gateway(gateway_settings.model_copy(update={"sse_heartbeat_seconds": 1})) as url:
        yield url


@pytest.mark.slow
def test_a_ninth_live_status_stream_closes_the_users_oldest(sse_gateway):
    gateway_url = sse_gateway
    alice = new_user(gateway_url)
    streams: list[SseStream] = []
    try:
        for _ in range(8):
            streams.append(SseStream(alice))
            assert streams[-1].response.status_code == 200
        assert not any(stream.ended.is_set() for stream in streams)
        streams.append(SseStream(alice))
        assert streams[-1].response.status_code == 200
        assert streams[0].ended.wait(10), "the oldest stream was not closed"
        time.sleep(0.5)
        assert not any(stream.ended.is_set() for stream in streams[1:])
        bob = new_user(gateway_url)
        bobs = SseStream(bob)
        streams.append(bobs)
        assert bobs.response.status_code == 200
    finally:
        for stream in streams:
            stream.close()
