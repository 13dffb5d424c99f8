"""The gateway's PartRecorder against the real upload coordinator: concurrent records leave
together, each gets its own outcome, and a backend that cannot be reached fails them all
the way a RecordPart call would."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest

from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc
from gateway.part_recorder import PartRecorder
from services.common.metrics import GRPC_REQUESTS

from .conftest import start_upload

UPLOAD_SERVICE = "dropfile.upload.v1.UploadService"


def record_parts_calls() -> float:
    return GRPC_REQUESTS.labels(UPLOAD_SERVICE, "RecordParts", "OK")._value.get()


def run_records(
    address: str,
    records: list[tuple[str, upload_pb2.RecordPartRequest]],
    *,
    batch_size: int = 64,
    batches_in_flight: int = 1,
) -> list:
    """Records every (token, part) at once; each one's outcome: None or its error."""

    async def main() -> list:
        async with grpc.aio.insecure_channel(address) as channel:
            recorder = PartRecorder(
                upload_pb2_grpc.UploadServiceStub(channel),
                batch_size=batch_size,
                batches_in_flight=batches_in_flight,
                timeout=10,
            )
            outcomes = await asyncio.gather(
                *(
                    recorder.record(part, access_token=token, request_id=f"r{n}")
                    for n, (token, part) in enumerate(records)
                ),
                return_exceptions=True,
            )
            await recorder.close()
            return outcomes

    return asyncio.run(main())


@pytest.fixture
def upload_of(upload_stub, make_token):
    """Starts an upload of `size` bytes for a new user: (token, file id)."""

    def start(size: int) -> tuple[str, str]:
        token = make_token(user_id=str(uuid.uuid4()))
        file_id = str(uuid.uuid4())
        upload_stub.InitiateUpload(
            upload_pb2.InitiateUploadRequest(file_id=file_id, file_name="f.bin", file_size=size),
            metadata=[("authorization", f"Bearer {token}")],
        )
        return token, file_id

    return start


def part(file_id: str, index: int, size: int) -> upload_pb2.RecordPartRequest:
    return upload_pb2.RecordPartRequest(
        file_id=file_id, chunk_index=index, size=size, etag="a" * 32
    )


def test_records_that_arrive_together_leave_in_one_call(upload_address, upload_of):
    token, file_id = upload_of(10 * 5 * 1024 * 1024)
    before = record_parts_calls()
    outcomes = run_records(
        upload_address, [(token, part(file_id, i, 5 * 1024 * 1024)) for i in range(10)]
    )
    assert outcomes == [None] * 10
    assert record_parts_calls() - before == 1


def test_batches_are_cut_at_the_batch_size_and_wait_for_the_call_in_flight(
    upload_address, upload_of
):
    token, file_id = upload_of(10 * 5 * 1024 * 1024)
    before = record_parts_calls()
    outcomes = run_records(
        upload_address,
        [(token, part(file_id, i, 5 * 1024 * 1024)) for i in range(10)],
        batch_size=4,
    )
    assert outcomes == [None] * 10
    assert record_parts_calls() - before == 3  # 4 + 4 + 2


def test_each_record_gets_its_own_outcome(upload_address, upload_of):
    alice, alices_file = upload_of(100)
    bob, _ = upload_of(100)
    outcomes = run_records(
        upload_address,
        [
            (alice, part(alices_file, 0, 100)),
            (bob, part(alices_file, 0, 100)),  # not bob's file
            (alice, part(alices_file, 0, 99)),  # wrong size
            ("", part(alices_file, 0, 100)),  # no token
        ],
    )
    assert outcomes[0] is None
    assert [(error.code(), error.details()) for error in outcomes[1:3]] == [
        (grpc.StatusCode.NOT_FOUND, "file not found"),
        (grpc.StatusCode.INVALID_ARGUMENT, "part 0 must be 100 bytes, not 99"),
    ]
    assert outcomes[3].code() == grpc.StatusCode.UNAUTHENTICATED


def test_an_unreachable_coordinator_fails_every_record_as_unavailable(upload_of):
    token, file_id = upload_of(100)
    with socket_without_server() as address:
        outcomes = run_records(address, [(token, part(file_id, 0, 100))] * 3, batches_in_flight=2)
    assert [error.code() for error in outcomes] == [grpc.StatusCode.UNAVAILABLE] * 3


@contextlib.contextmanager
def socket_without_server() -> Iterator[str]:
    """An address nothing listens on (a port bound, never listened to)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_concurrent_record_chunk_requests_are_answered_one_by_one(gateway_url, signed_in):
    """Through the gateway: parallel record-chunk requests, some refused, each answered
    with its own status and v1 body."""
    client = signed_in()
    file_id, _ = start_upload(client, b"x" * (3 * 5 * 1024 * 1024))
    cookies = dict(client.cookies)
    bodies = [
        {"file_id": file_id, "chunk_index": i, "size": str(5 * 1024 * 1024), "etag": "a" * 32}
        for i in range(3)
    ]
    bodies += [
        {"file_id": file_id, "chunk_index": 0, "size": "12", "etag": "a" * 32},
        {"file_id": str(uuid.uuid4()), "chunk_index": 0, "size": "1", "etag": "a" * 32},
    ]

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway_url, cookies=cookies) as http:
            return await asyncio.gather(
                *(http.post("/api/files/record-chunk", json=body) for body in bodies * 4)
            )

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200, 200, 200, 400, 404] * 4
    assert all(r.json() == {"success": True} for r in responses if r.status_code == 200)
    assert {r.json()["error"] for r in responses if r.status_code == 404} == {"file not found"}
    assert all(r.json()["success"] is False for r in responses if r.status_code != 200)


def test_a_request_that_hangs_up_does_not_cancel_the_call_it_shares(
    upload_address, upload_of, db_engine
):
    token, file_id = upload_of(3 * 5 * 1024 * 1024)

    async def main() -> list:
        async with grpc.aio.insecure_channel(upload_address) as channel:
            recorder = PartRecorder(
                upload_pb2_grpc.UploadServiceStub(channel),
                batch_size=64,
                batches_in_flight=1,
                timeout=10,
            )
            tasks = [
                asyncio.ensure_future(
                    recorder.record(
                        part(file_id, i, 5 * 1024 * 1024), access_token=token, request_id=f"r{i}"
                    )
                )
                for i in range(3)
            ]
            await asyncio.sleep(0)  # each has queued its record
            tasks[1].cancel()  # its client hung up
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            await recorder.close()
            return outcomes

    outcomes = asyncio.run(main())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], asyncio.CancelledError)
    with db_engine.connect() as conn:
        recorded = conn.exec_driver_sql(
            "SELECT chunk_index FROM chunks WHERE file_id = %s ORDER BY 1", (file_id,)
        ).scalars()
        assert list(recorded) == [0, 1, 2]  # the part of the one that left is recorded too
