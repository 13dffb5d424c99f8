"""`/api/v2` uploads: files of up to the server's v2 limit (5 TiB by default), in parts
whose size the server chooses, with URLs presigned in batches the client asks for
(part-urls, in v2.py), a checksum on every part that storage verifies, resume from the
parts storage holds, and each user's quota.

    POST /api/v2/files                      start an upload (no URL yet; a single PUT's
                                            URL when it gives its checksum)
    GET  /api/v2/files/{id}                 a file, with its whole-file SHA-256
    GET  /api/v2/files/{id}/upload          where its upload stands: parts already stored
    POST /api/v2/files/{id}/part-urls       presigned PUT URLs for parts a..b (v2.py)
    POST /api/v2/files/{id}/parts           record a part storage accepted
    POST /api/v2/files/{id}/parts/batch     record several (up to 100) in one request
    POST /api/v2/files/{id}/complete        complete (with the recorded parts by default)
    GET  /api/v2/quota                      the caller's quota

Listing is GET /api/v2/files (v2_listing.py); downloading, aborting and deleting are v1's
routes (/api/files/...). Errors are `{"error": "..."}` with v1's status mapping
(gateway/errors.py); over quota is 413."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Path

from dropfile.upload.v1 import upload_pb2

from ..deps import UserCall
from ..errors import rpc_error, rpc_error_details
from ..responses import error_responses, file_links
from ..schemas import Uuid
from ..schemas_v2 import (
    CompleteBody,
    CompleteReply,
    CreateUploadBody,
    CreateUploadReply,
    FileReply,
    QuotaReply,
    RecordPartBody,
    RecordPartReply,
    RecordPartsBody,
    RecordPartsReply,
    UploadReply,
)
from .files import COMPLETION_CODES

router = APIRouter(prefix="/api/v2", tags=["v2"])

FileIdPath = Annotated[Uuid, Path(description="The file's id (a UUID)")]
# What recording a part may be refused with.
RECORD_CODES = (
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "UPLOAD_ABORTED",
    "UPLOAD_COMPLETE",
    "FAILED_PRECONDITION",
    "TOO_MANY_PARTS_WAITING",
)
_ALGORITHM = {
    "SHA256": upload_pb2.CHECKSUM_ALGORITHM_SHA256,
    "CRC32C": upload_pb2.CHECKSUM_ALGORITHM_CRC32C,
}
_ALGORITHM_NAME = {value: name for name, value in _ALGORITHM.items()}
_STATE_PREFIX = "STATE_"
_STATUS_PREFIX = "FILE_STATUS_"


def file_v2(file: upload_pb2.File) -> dict[str, Any]:
    created = file.created_at.ToDatetime(tzinfo=UTC)
    return {
        "fileId": file.file_id,
        "fileName": file.file_name,
        "mimeType": file.mime_type,
        "size": file.size,
        "s3Key": file.s3_key,
        "status": upload_pb2.FileStatus.Name(file.status).removeprefix(_STATUS_PREFIX),
        "createdAt": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sha256": file.sha256 or None,
    }


@router.post(
    "/files",
    operation_id="createUpload",
    status_code=201,
    response_model=CreateUploadReply,
    # The single-PUT fields appear only in replies to a single-PUT creation.
    response_model_exclude_unset=True,
    responses={
        **error_responses(
            "INVALID_ARGUMENT",
            "FILE_TOO_LARGE",
            "ALREADY_EXISTS",
            "QUOTA_EXCEEDED",
            "TOO_MANY_UPLOADS",
            "SINGLE_PUT_TOO_LARGE",
        ),
        201: {"links": file_links("$response.body#/fileId")},
    },
    summary="Start an upload; the server chooses the part size (no URL yet)",
)
async def create_upload(body: CreateUploadBody, call: UserCall) -> dict[str, Any]:
    reply = await call.backends.upload.CreateUpload(
        upload_pb2.CreateUploadRequest(
            file_id=body.fileId or "",
            file_name=body.fileName,
            mime_type=body.mimeType,
            file_size=body.size,
            checksum_algorithm=_ALGORITHM[body.checksumAlgorithm],
            sha256=body.sha256 or "",
            single_put=body.singlePut,
            part_checksum=body.partChecksum or "",
        ),
        **call.kwargs,
    )
    created: dict[str, Any] = {
        "fileId": reply.file_id,
        "uploadId": reply.upload_id,
        "partSize": reply.part_size,
        "partCount": reply.part_count,
        "checksumAlgorithm": _ALGORITHM_NAME[reply.checksum_algorithm],
    }
    if reply.single_put:
        created["singlePut"] = True
    if reply.HasField("put_url"):
        created["putUrl"] = {
            "partNumber": reply.put_url.part_number,
            "url": reply.put_url.url,
            "headers": dict(reply.put_url.headers),
        }
        created["expiresIn"] = reply.put_url_expires_in_seconds
    return created


@router.get(
    "/files/{file_id}",
    operation_id="getFile",
    response_model=FileReply,
    responses=error_responses("INVALID_ARGUMENT", "NOT_FOUND"),
    summary="One of the caller's files, with its whole-file SHA-256",
)
async def get_file(file_id: FileIdPath, call: UserCall) -> dict[str, Any]:
    reply = await call.backends.upload.GetFile(
        upload_pb2.GetFileRequest(file_id=file_id), **call.kwargs
    )
    return {"file": file_v2(reply.file)}


@router.get(
    "/files/{file_id}/upload",
    operation_id="getUploadState",
    response_model=UploadReply,
    response_model_exclude_unset=True,  # singlePut: only for single-PUT uploads
    responses=error_responses("INVALID_ARGUMENT", "NOT_FOUND", "UPLOAD_GONE"),
    summary="Where an upload stands, and the parts storage already holds (resume)",
)
async def get_upload(file_id: FileIdPath, call: UserCall) -> dict[str, Any]:
    reply = await call.backends.upload.GetUpload(
        upload_pb2.GetUploadRequest(file_id=file_id), **call.kwargs
    )
    state: dict[str, Any] = {
        "state": upload_pb2.GetUploadResponse.State.Name(reply.state).removeprefix(_STATE_PREFIX),
        "file": file_v2(reply.file),
        "uploadId": reply.upload_id,
        "partSize": reply.part_size,
        "partCount": reply.part_count,
        "checksumAlgorithm": _ALGORITHM_NAME.get(reply.checksum_algorithm),
        "storedParts": [
            {
                "partNumber": part.part_number,
                "size": part.size,
                "etag": part.etag,
                "checksum": part.checksum or None,
            }
            for part in reply.stored_parts
        ],
    }
    if reply.single_put:
        state["singlePut"] = True
    return state


def _part_record(file_id: str, part: RecordPartBody) -> upload_pb2.RecordPartRequest:
    return upload_pb2.RecordPartRequest(
        file_id=file_id,
        chunk_index=part.partNumber - 1,
        size=part.size,
        etag=part.etag,
        checksum=part.checksum or "",
    )


@router.post(
    "/files/{file_id}/parts",
    operation_id="recordPart",
    response_model=RecordPartReply,
    responses=error_responses(*RECORD_CODES),
    summary="Record a part storage accepted",
)
async def record_part(file_id: FileIdPath, body: RecordPartBody, call: UserCall) -> dict[str, Any]:
    await call.record_part(_part_record(file_id, body))
    return {"partNumber": body.partNumber}


@router.post(
    "/files/{file_id}/parts/batch",
    operation_id="recordParts",
    response_model=RecordPartsReply,
    responses=error_responses(*RECORD_CODES),
    summary="Record several parts storage accepted, in one request",
)
async def record_parts(
    file_id: FileIdPath, body: RecordPartsBody, call: UserCall
) -> dict[str, Any]:
    """Each part is recorded as POST .../parts records it, and every one is tried. When
    some are refused, the answer is the first refusal's error, naming its part; the others
    are recorded, and sending the same batch again is safe."""
    # Sent together, they leave in one RecordParts call (part_recorder.py).
    outcomes = await call.record_parts([_part_record(file_id, part) for part in body.parts])
    for part, outcome in zip(body.parts, outcomes):
        if isinstance(outcome, grpc.aio.AioRpcError):
            raise rpc_error(
                outcome.code(),
                f"part {part.partNumber}: {outcome.details()}",
                reason=rpc_error_details(outcome).reason,
            )
        if isinstance(outcome, BaseException):
            raise outcome
    return {"partNumbers": [part.partNumber for part in body.parts]}


@router.post(
    "/files/{file_id}/complete",
    operation_id="completeUploadV2",
    response_model=CompleteReply,
    responses=error_responses(*COMPLETION_CODES),
    summary="Complete the upload (the file is UPLOADED once storage confirms it)",
)
async def complete(file_id: FileIdPath, body: CompleteBody, call: UserCall) -> dict[str, Any]:
    await call.backends.upload.CompleteUpload(
        upload_pb2.CompleteUploadRequest(
            file_id=file_id,
            upload_id=body.uploadId or "",
            parts=[
                upload_pb2.CompletedPart(part_number=part.partNumber, etag=part.etag)
                for part in body.parts or []
            ],
            use_recorded_parts=body.parts is None,
            sha256=body.sha256 or "",
        ),
        **call.kwargs,
    )
    return {"fileId": file_id, "state": "COMPLETED"}


@router.get(
    "/quota",
    operation_id="getQuota",
    response_model=QuotaReply,
    summary="The caller's storage quota and what counts against it",
)
async def quota(call: UserCall) -> dict[str, Any]:
    reply = await call.backends.upload.GetQuota(upload_pb2.GetQuotaRequest(), **call.kwargs)
    return {
        "usedBytes": reply.used_bytes,
        "uploadingBytes": reply.uploading_bytes,
        "limitBytes": reply.limit_bytes or None,
    }
