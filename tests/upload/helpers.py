"""What an upload client does, for the tests: initiate, PUT parts to presigned URLs,
record them, complete; small assertions on gRPC errors; and a coordinator started with
settings of a test's choosing."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import httpx
import pytest

from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc
from services.upload.server import create_server
from services.upload.settings import UploadSettings

MIB = 1024 * 1024
PART = 5 * MIB


@dataclass
class RunningUpload:
    settings: UploadSettings
    port: int
    stub: upload_pb2_grpc.UploadServiceStub
    internal_stub: upload_pb2_grpc.UploadInternalServiceStub


@contextmanager
def running_upload_server(settings: UploadSettings) -> Iterator[RunningUpload]:
    handle = create_server(settings, port=0)
    handle.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            yield RunningUpload(
                settings=settings,
                port=handle.port,
                stub=upload_pb2_grpc.UploadServiceStub(channel),
                internal_stub=upload_pb2_grpc.UploadInternalServiceStub(channel),
            )
    finally:
        handle.stop(0).wait()


def race(calls: list) -> list:
    """Runs the calls at once, one thread each, released together; returns each one's
    result, or the status code of the gRPC error it raised."""
    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except grpc.RpcError as exc:
            results[i] = exc.code()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def error_of(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def assert_code(code: grpc.StatusCode, call, *args, **kwargs) -> grpc.RpcError:
    err = error_of(call, *args, **kwargs)
    assert err.code() == code, (err.code(), err.details())
    return err


@dataclass
class Upload:
    file_id: str
    data: bytes
    reply: upload_pb2.InitiateUploadResponse
    etags: list[str] | None = None

    @property
    def upload_id(self) -> str:
        return self.reply.upload_id

    @property
    def s3_key(self) -> str:
        return self.reply.s3_key


def initiate(
    api,
    user,
    data: bytes | int,
    *,
    name: str = "data.bin",
    mime: str = "",
    file_id: str | None = None,
) -> Upload:
    if isinstance(data, int):
        data = os.urandom(data)
    file_id = file_id or str(uuid.uuid4())
    reply = api.InitiateUpload(
        upload_pb2.InitiateUploadRequest(
            file_id=file_id, file_name=name, mime_type=mime, file_size=len(data)
        ),
        metadata=user.metadata,
    )
    return Upload(file_id=file_id, data=data, reply=reply)


def put_part(url: str, body: bytes) -> str:
    """PUTs one part as a browser does; returns storage's ETag (quotes kept)."""
    response = httpx.put(
        url,
        content=body,
        timeout=60,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))},
    )
    assert response.status_code == 200, response.text
    return response.headers["ETag"]


def put_parts(upload: Upload) -> list[str]:
    size = upload.reply.part_size
    upload.etags = [
        put_part(url, upload.data[i * size : (i + 1) * size])
        for i, url in enumerate(upload.reply.part_urls)
    ]
    return upload.etags


def record_parts(api, user, upload: Upload) -> None:
    size = upload.reply.part_size
    for index, etag in enumerate(upload.etags):
        api.RecordPart(
            upload_pb2.RecordPartRequest(
                file_id=upload.file_id,
                chunk_index=index,
                size=len(upload.data[index * size : (index + 1) * size]),
                etag=etag.strip('"'),
            ),
            metadata=user.metadata,
        )


def completion(
    upload: Upload, *, etags: list[str] | None = None
) -> upload_pb2.CompleteUploadRequest:
    etags = upload.etags if etags is None else etags
    return upload_pb2.CompleteUploadRequest(
        upload_id=upload.upload_id,
        file_id=upload.file_id,
        parts=[
            upload_pb2.CompletedPart(part_number=i + 1, etag=etag) for i, etag in enumerate(etags)
        ],
    )


def upload_file(api, user, data: bytes | int, **kwargs) -> Upload:
    """Initiate, PUT every part, record every part, complete."""
    upload = initiate(api, user, data, **kwargs)
    put_parts(upload)
    record_parts(api, user, upload)
    api.CompleteUpload(completion(upload), metadata=user.metadata)
    return upload


def multipart_etag(part_etags: list[str]) -> str:
    """The ETag S3 (and moto) gives an object completed from these parts: the MD5 of the
    parts' binary MD5s, then `-<part count>`."""
    digests = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
    return f"{hashlib.md5(digests).hexdigest()}-{len(part_etags)}"


def confirm_request(
    upload: Upload, *, size: int | None = None, etag: str | None = None
) -> upload_pb2.ConfirmUploadRequest:
    """The confirmation storage's event for the completed `upload` asks for."""
    return upload_pb2.ConfirmUploadRequest(
        s3_key=upload.s3_key,
        size=len(upload.data) if size is None else size,
        etag=multipart_etag(upload.etags or []) if etag is None else etag,
    )


def listed(api, user, file_id: str) -> upload_pb2.File | None:
    files = api.ListFiles(upload_pb2.ListFilesRequest(), metadata=user.metadata).files
    return next((f for f in files if f.file_id == file_id), None)
