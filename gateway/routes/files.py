"""`/api/files`: multipart uploads (presigned part URLs, recorded parts, completion, abort),
listing, download URLs and deletion. Every route acts for the signed-in caller; the upload
service answers NOT_FOUND for anyone else's file."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from dropfile.upload.v1 import upload_pb2

from ..deps import UserCall
from ..file_lists import v1_file_list
from ..json_replies import json_reply
from ..responses import error_responses, file_links
from ..schemas import (
    AbortUploadBody,
    CompleteUploadBody,
    DeleteFileBody,
    DownloadUrlBody,
    DownloadUrlReply,
    FileListReply,
    MessageReply,
    RecordChunkBody,
    SuccessReply,
    UploadUrlsBody,
    UploadUrlsReply,
)

router = APIRouter(prefix="/api/files", tags=["files"])
# What a completion may be refused with, v1's and v2's alike.
COMPLETION_CODES = (
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "UPLOAD_ABORTED",
    "UPLOAD_GONE",
    "PART_NOT_RECORDED",
    "PART_NOT_STORED",
    "PART_ETAG_MISMATCH",
    "PART_SIZE_MISMATCH",
    "PART_CHECKSUM_UNKNOWN",
    "PARTS_REFUSED",
    "FAILED_PRECONDITION",
    "QUOTA_EXCEEDED",
)

_STATUS_PREFIX = "FILE_STATUS_"


def _file_entry(file: upload_pb2.File) -> dict[str, Any]:
    created = file.created_at.ToDatetime(tzinfo=UTC)
    return {
        "fileId": file.file_id,
        "fileName": file.file_name,
        "mimeType": file.mime_type,
        "size": file.size,
        "s3Key": file.s3_key,
        "status": upload_pb2.FileStatus.Name(file.status).removeprefix(_STATUS_PREFIX),
        # JavaScript's Date#toISOString form, which clients parse.
        "createdAt": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


@router.post(
    "/get-upload-urls",
    operation_id="getUploadUrls",
    response_model=UploadUrlsReply,
    responses={
        **error_responses(
            "INVALID_ARGUMENT",
            "FILE_TOO_LARGE",
            "ALREADY_EXISTS",
            "QUOTA_EXCEEDED",
            "TOO_MANY_UPLOADS",
        ),
        200: {"links": file_links("$request.body#/file_id")},
    },
    summary="Start a multipart upload: one presigned PUT URL per 5 MiB part",
)
async def get_upload_urls(body: UploadUrlsBody, call: UserCall) -> Response:
    reply = await call.backends.upload.InitiateUpload(
        upload_pb2.InitiateUploadRequest(
            file_id=body.file_id,
            file_name=body.file_name,
            mime_type=body.file_type,
            file_size=body.file_size,
        ),
        **call.kwargs,
    )
    # Up to 10,000 URLs (~5 MB), written to the body as they are read (json_replies.py).
    return json_reply(
        {"success": True, "presignedUrls": reply.part_urls, "uploadId": reply.upload_id},
        long_list="presignedUrls",
    )


@router.post(
    "/record-chunk",
    operation_id="recordChunk",
    response_model=SuccessReply,
    responses=error_responses(
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "UPLOAD_ABORTED",
        "UPLOAD_COMPLETE",
        "FAILED_PRECONDITION",
        "TOO_MANY_PARTS_WAITING",
    ),
    summary="Record a part the client has PUT to storage",
)
async def record_chunk(body: RecordChunkBody, call: UserCall) -> dict[str, Any]:
    await call.record_part(
        upload_pb2.RecordPartRequest(
            file_id=body.file_id, chunk_index=body.chunk_index, size=body.size, etag=body.etag
        )
    )
    return {"success": True}


@router.post(
    "/complete-upload",
    operation_id="completeUpload",
    response_model=MessageReply,
    responses=error_responses(*COMPLETION_CODES),
    summary="Complete the multipart upload (the file is UPLOADED once storage confirms it)",
)
async def complete_upload(body: CompleteUploadBody, call: UserCall) -> dict[str, Any]:
    await call.backends.upload.CompleteUpload(
        upload_pb2.CompleteUploadRequest(
            upload_id=body.uploadId,
            file_id=body.fileId,
            parts=[
                upload_pb2.CompletedPart(part_number=part.PartNumber, etag=part.ETag)
                for part in body.parts
            ],
        ),
        **call.kwargs,
    )
    return {"success": True, "message": "upload completed; storage confirmation pending"}


@router.post(
    "/abort-upload",
    operation_id="abortUpload",
    response_model=MessageReply,
    responses=error_responses("INVALID_ARGUMENT", "NOT_FOUND", "UPLOAD_COMPLETE"),
    summary="Abort a multipart upload (idempotent)",
)
async def abort_upload(body: AbortUploadBody, call: UserCall) -> dict[str, Any]:
    await call.backends.upload.AbortUpload(
        upload_pb2.AbortUploadRequest(upload_id=body.uploadId, file_id=body.file_id), **call.kwargs
    )
    return {"success": True, "message": "upload aborted"}


@router.post(
    "/get-download-url",
    operation_id="getDownloadUrl",
    response_model=DownloadUrlReply,
    responses=error_responses("INVALID_ARGUMENT", "NOT_FOUND", "NOT_UPLOADED", "UPLOAD_FAILED"),
    summary="A presigned GET URL for one of the caller's uploaded files",
)
async def get_download_url(body: DownloadUrlBody, call: UserCall) -> dict[str, Any]:
    reply = await call.backends.upload.GetDownloadUrl(
        upload_pb2.GetDownloadUrlRequest(s3_key=body.s3_key), **call.kwargs
    )
    return {"success": True, "url": reply.url}


@router.get(
    "/list",
    operation_id="listFiles",
    response_model=FileListReply,
    summary="The caller's files, newest first",
)
async def list_files(call: UserCall) -> Response:
    # Every file, from the coordinator's pages of 1,000, streamed (file_lists.py; its
    # v1_entry writes what _file_entry does, faster).
    return await v1_file_list(call)


@router.delete(
    "/delete",
    operation_id="deleteFile",
    response_model=MessageReply,
    responses=error_responses("INVALID_ARGUMENT", "NOT_FOUND"),
    summary="Delete one of the caller's files and its stored object",
)
async def delete_file(body: DeleteFileBody, call: UserCall) -> dict[str, Any]:
    await call.backends.upload.DeleteFile(
        upload_pb2.DeleteFileRequest(file_id=body.file_id), **call.kwargs
    )
    return {"success": True, "message": "file deleted"}
