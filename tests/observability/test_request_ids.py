"""Request ids across processes' boundaries: every RPC a service serves is logged once
(`rpc.access`) with the request id the caller sent: the gateway's for users' requests,
the event processor's for its own calls to upload."""

from __future__ import annotations

import logging
import threading
import uuid

import grpc
import pytest

from services.common.logs import request_id_var
from services.events.notifications import ObjectCreated
from services.events.upload_client import ConfirmOutcome, UploadConfirmer


class RequestIdRecorder(logging.Handler):
    """Keeps (logger, message, request id) of each record as the JSON formatter would see
    it: the request id is read in the thread that logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._guard = threading.Lock()
        self.lines: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.lines.append((record.name, record.getMessage(), request_id_var.get()))

    def rpcs(self, method: str) -> list[str]:
        """Request ids of the access-log lines of `method` (a full method name)."""
        with self._guard:
            return [
                rid
                for name, message, rid in self.lines
                if name == "rpc.access" and message.startswith(method + " ")
            ]


@pytest.fixture
def recorder():
    handler = RequestIdRecorder()
    logger = logging.getLogger("rpc.access")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_a_gateway_request_id_reaches_the_service_it_calls(api_client, recorder):
    client = api_client()
    request_id = f"rid-{uuid.uuid4().hex}"
    response = client.post(
        "/api/auth/signin",
        headers={"X-Request-ID": request_id},
        json={"user": {"email": "nobody@example.com", "password": "x" * 12}},
    )
    assert response.status_code in (400, 401)
    assert response.headers["x-request-id"] == request_id
    assert recorder.rpcs("/dropfile.auth.v1.AuthService/SignIn") == [request_id]


@pytest.fixture
def confirmer(upload_address, service_token):
    with grpc.insecure_channel(upload_address) as channel:
        yield UploadConfirmer(channel, service_token=service_token, timeout=10)


def test_confirmations_carry_the_processors_request_id(confirmer, recorder):
    created = ObjectCreated(
        event_name="ObjectCreated:Put",
        bucket="b",
        key=f"users/{uuid.uuid4()}/{uuid.uuid4()}",
        size=1,
        etag="e",
        event_time=None,
        sequencer=None,
    )
    assert confirmer.confirm(created, request_id="message-42") is ConfirmOutcome.UNKNOWN_KEY
    assert recorder.rpcs("/dropfile.upload.v1.UploadInternalService/ConfirmUpload") == [
        "message-42"
    ]


def test_listing_pending_confirmations_carries_a_request_id(confirmer, recorder):
    confirmer.pending(completed_at_least_seconds_ago=3600, limit=1)
    confirmer.pending(completed_at_least_seconds_ago=3600, limit=1)
    ids = recorder.rpcs("/dropfile.upload.v1.UploadInternalService/ListPendingConfirmations")
    assert len(ids) == 2 and all(rid.startswith("reconcile-") for rid in ids)
    assert ids[0] != ids[1]  # each listing is a request of its own


def test_health_checks_are_logged_at_debug_only(upload_address, recorder):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(upload_address) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert recorder.rpcs("/grpc.health.v1.Health/Check") == []


def test_recorded_parts_are_logged_at_info_only_when_refused(upload_stub, make_token, recorder):
    """RecordPart runs once per part of every upload: its successes are DEBUG lines (the
    gateway logs each request), its refusals INFO ones like any other call's."""
    from dropfile.upload.v1 import upload_pb2

    user = [("authorization", f"Bearer {make_token(user_id=str(uuid.uuid4()))}")]
    file_id = str(uuid.uuid4())
    upload_stub.InitiateUpload(
        upload_pb2.InitiateUploadRequest(file_id=file_id, file_name="a.bin", file_size=10),
        metadata=user,
    )
    upload_stub.RecordPart(
        upload_pb2.RecordPartRequest(file_id=file_id, chunk_index=0, size=10, etag="e"),
        metadata=user + [("x-request-id", "rid-recorded")],
    )
    with pytest.raises(grpc.RpcError):
        upload_stub.RecordPart(
            upload_pb2.RecordPartRequest(file_id=file_id, chunk_index=7, size=10, etag="e"),
            metadata=user + [("x-request-id", "rid-refused")],
        )
    assert recorder.rpcs("/dropfile.upload.v1.UploadService/RecordPart") == ["rid-refused"]
    assert recorder.rpcs("/dropfile.upload.v1.UploadService/InitiateUpload")


def test_parts_recorded_through_the_gateway_log_their_refusals_with_their_request_ids(
    api_client, recorder
):
    """The gateway sends record-chunk requests on in RecordParts calls: a refused record
    is still logged with its own request's id, a recorded one is not."""
    from tests.gateway.conftest import sign_up, start_upload

    client = api_client()
    assert sign_up(client).status_code == 200
    file_id, _ = start_upload(client, b"x" * 10)
    for request_id, size in (("rid-chunk-recorded", "10"), ("rid-chunk-refused", "11")):
        client.post(
            "/api/files/record-chunk",
            headers={"X-Request-ID": request_id},
            json={"file_id": file_id, "chunk_index": 0, "size": size, "etag": "a" * 32},
        )
    assert recorder.rpcs("/dropfile.upload.v1.UploadService/RecordPart") == ["rid-chunk-refused"]
