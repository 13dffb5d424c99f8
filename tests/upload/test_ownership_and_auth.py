"""Another user's file does not exist for you; tokens decide who you are."""

from __future__ import annotations

import time
import uuid

import grpc
import jwt
import pytest

from dropfile.upload.v1 import upload_pb2

from .helpers import (
    assert_code,
    completion,
    confirm_request,
    initiate,
    listed,
    put_parts,
    record_parts,
    upload_file,
)


def test_a_second_user_gets_not_found_on_every_rpc_for_the_first_users_file(
    api, internal, alice, bob, service_metadata
):
    upload = initiate(api, alice, 1000)
    put_parts(upload)
    record_parts(api, alice, upload)
    for call, request in [
        (
            api.RecordPart,
            upload_pb2.RecordPartRequest(
                file_id=upload.file_id, chunk_index=0, size=1000, etag=upload.etags[0]
            ),
        ),
        (api.CompleteUpload, completion(upload)),
        (
            api.AbortUpload,
            upload_pb2.AbortUploadRequest(upload_id=upload.upload_id, file_id=upload.file_id),
        ),
        (api.DeleteFile, upload_pb2.DeleteFileRequest(file_id=upload.file_id)),
        (api.GetDownloadUrl, upload_pb2.GetDownloadUrlRequest(s3_key=upload.s3_key)),
    ]:
        err = assert_code(grpc.StatusCode.NOT_FOUND, call, request, metadata=bob.metadata)
        assert err.details() == "file not found"
    assert listed(api, bob, upload.file_id) is None
    assert_code(grpc.StatusCode.ALREADY_EXISTS, initiate, api, bob, 10, file_id=upload.file_id)

    # None of that touched Alice's file: she completes it, and once confirmed Bob still
    # cannot download or delete it.
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert_code(
        grpc.StatusCode.NOT_FOUND,
        api.GetDownloadUrl,
        upload_pb2.GetDownloadUrlRequest(s3_key=upload.s3_key),
        metadata=bob.metadata,
    )
    assert_code(
        grpc.StatusCode.NOT_FOUND,
        api.DeleteFile,
        upload_pb2.DeleteFileRequest(file_id=upload.file_id),
        metadata=bob.metadata,
    )
    assert listed(api, alice, upload.file_id).status == upload_pb2.FILE_STATUS_UPLOADED
    api.GetDownloadUrl(
        upload_pb2.GetDownloadUrlRequest(s3_key=upload.s3_key), metadata=alice.metadata
    )


def test_unknown_files_are_not_found(api, alice):
    unknown = str(uuid.uuid4())
    for call, request in [
        (
            api.RecordPart,
            upload_pb2.RecordPartRequest(file_id=unknown, chunk_index=0, size=1, etag="abc"),
        ),
        (
            api.CompleteUpload,
            upload_pb2.CompleteUploadRequest(
                file_id=unknown,
                upload_id="u",
                parts=[upload_pb2.CompletedPart(part_number=1, etag="abc")],
            ),
        ),
        (api.AbortUpload, upload_pb2.AbortUploadRequest(file_id=unknown, upload_id="u")),
        (api.DeleteFile, upload_pb2.DeleteFileRequest(file_id=unknown)),
        (api.GetDownloadUrl, upload_pb2.GetDownloadUrlRequest(s3_key=f"users/{unknown}/x")),
    ]:
        assert_code(grpc.StatusCode.NOT_FOUND, call, request, metadata=alice.metadata)


def test_a_stale_redis_session_of_another_user_reveals_nothing(api, alice, bob):
    """RecordPart's fast path trusts the session for the owner check: it must say no."""
    upload = initiate(api, alice, 10)
    assert_code(
        grpc.StatusCode.NOT_FOUND,
        api.RecordPart,
        upload_pb2.RecordPartRequest(file_id=upload.file_id, chunk_index=99, size=-1, etag="x"),
        metadata=bob.metadata,
    )


def _user_rpcs(file_id: str):
    return [
        (
            "InitiateUpload",
            upload_pb2.InitiateUploadRequest(file_id=file_id, file_name="a", file_size=1),
        ),
        (
            "RecordPart",
            upload_pb2.RecordPartRequest(file_id=file_id, chunk_index=0, size=1, etag="abc"),
        ),
        ("CompleteUpload", upload_pb2.CompleteUploadRequest(file_id=file_id, upload_id="u")),
        ("AbortUpload", upload_pb2.AbortUploadRequest(file_id=file_id, upload_id="u")),
        ("ListFiles", upload_pb2.ListFilesRequest()),
        ("GetDownloadUrl", upload_pb2.GetDownloadUrlRequest(s3_key="users/a/b")),
        ("DeleteFile", upload_pb2.DeleteFileRequest(file_id=file_id)),
    ]


def _bad_tokens(make_token, service_token):
    now = int(time.time())
    forged = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "email": "e@x.io",
            "iat": now,
            "exp": now + 600,
            "jti": "j",
            "iss": "dropfile-auth",
            "aud": "dropfile",
        },
        "a-shared-secret-of-at-least-32-bytes!",
        algorithm="HS256",
    )
    return {
        "missing": [],
        "not bearer": [("authorization", "Basic abc")],
        "garbage": [("authorization", "Bearer not.a.jwt")],
        "expired": [("authorization", f"Bearer {make_token(iat=now - 3600, exp=now - 60)}")],
        "forged": [("authorization", f"Bearer {forged}")],
        "wrong audience": [("authorization", f"Bearer {make_token(aud='other')}")],
        "service token only": [("x-dropfile-service-token", service_token)],
        "subject not a user id": [("authorization", f"Bearer {make_token(user_id='admin')}")],
    }


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "not bearer",
        "garbage",
        "expired",
        "forged",
        "wrong audience",
        "service token only",
        "subject not a user id",
    ],
)
def test_every_user_rpc_refuses_bad_tokens(api, make_token, service_token, kind):
    metadata = _bad_tokens(make_token, service_token)[kind]
    file_id = str(uuid.uuid4())
    for name, request in _user_rpcs(file_id):
        err = assert_code(
            grpc.StatusCode.UNAUTHENTICATED, getattr(api, name), request, metadata=metadata
        )
        if kind == "expired":
            assert "expired" in err.details()


def test_the_service_token_works_for_confirm(internal, service_metadata):
    reply = internal.ConfirmUpload(
        upload_pb2.ConfirmUploadRequest(s3_key="users/a/b", size=1), metadata=service_metadata
    )
    assert reply.outcome == upload_pb2.ConfirmUploadResponse.OUTCOME_UNKNOWN_KEY


@pytest.mark.slow
def test_session_fixtures_serve_the_shared_stack(
    upload_stub,
    upload_internal_stub,
    upload_address,
    upload_settings,
    storage,
    alice,
    s3,
    service_metadata,
):
    """The fixtures other suites build on: a coordinator on the session bucket."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    assert upload_address.startswith("127.0.0.1:")
    assert upload_settings.s3_bucket == storage["bucket"]
    upload = upload_file(upload_stub, alice, 10)
    assert s3.head_object(Bucket=storage["bucket"], Key=upload.s3_key)["ContentLength"] == 10
    reply = upload_internal_stub.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    # An event processor running in this session may have confirmed it first.
    assert reply.outcome in (
        upload_pb2.ConfirmUploadResponse.OUTCOME_CONFIRMED,
        upload_pb2.ConfirmUploadResponse.OUTCOME_ALREADY_CONFIRMED,
    )
    with grpc.insecure_channel(upload_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in (
            "",
            "dropfile.upload.v1.UploadService",
            "dropfile.upload.v1.UploadInternalService",
        ):
            assert (
                health.Check(health_pb2.HealthCheckRequest(service=service)).status
                == health_pb2.HealthCheckResponse.SERVING
            )


def test_a_method_already_served_still_checks_each_calls_token(api, alice):
    """The interceptor wraps a method's handler once: the check runs on every call."""
    request = upload_pb2.ListFilesRequest()
    api.ListFiles(request, metadata=alice.metadata)
    assert_code(
        grpc.StatusCode.UNAUTHENTICATED,
        api.ListFiles,
        request,
        metadata=[("authorization", "Bearer not.a.jwt")],
    )
    api.ListFiles(request, metadata=alice.metadata)
