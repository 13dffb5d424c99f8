"""`/api/files`: multipart uploads (presigned part URLs, recorded parts, completion, abort),
listing, download URLs and deletion. Every route acts for the signed-in caller; the upload
service answers NOT_FOUND for anyone else's file."""

from __future__ import annotations

from datetime import UTC

from fastapi import APIRouter

from dropfile.upload.v1 import upload_pb2

from ..deps import UserCall
from ..file_lists import v1_file_list
from ..json_replies import json_reply
from ..schemas import (
    AbortUploadBody,
    CompleteUploadBody,
    DeleteFileBody,
    DownloadUrlBody,
    DownloadUrlReply,
    FileErrorReply,
    FileListReply,
    MessageReply,
    RecordChunkBody,
    SuccessReply,
    UploadUrlsBody,
    UploadUrlsReply,
)

router = APIRouter(prefix="/api/files", tags=["files"])

_ERRORS = {status: {"model": FileErrorReply} for status in (400, 401, 404, 409, 413, 503)}
_STATUS_PREFIX = "FILE_STATUS_"


def _file_entry(file: upload_pb2.File) -> dict:
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
    response_model=UploadUrlsReply,
    responses=_ERRORS,
    summary="Start a multipart upload: one presigned PUT URL per 5 MiB part",
)
async def get_upload_urls(body: UploadUrlsBody, call: UserCall):
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
    response_model=SuccessReply,
    responses=_ERRORS,
    summary="Record a part the client has PUT to storage",
)
async def record_chunk(body: RecordChunkBody, call: UserCall):
    await call.record_part(
        upload_pb2.RecordPartRequest(
            file_id=body.file_id, chunk_index=body.chunk_index, size=body.size, etag=body.etag
        )
    )
    return {"success": True}


@router.post(
    "/complete-upload",
    response_model=MessageReply,
    responses=_ERRORS,
    summary="Complete the multipart upload (the file is UPLOADED once storage confirms it)",
)
async def complete_upload(body: CompleteUploadBody, call: UserCall):
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
    response_model=MessageReply,
    responses=_ERRORS,
    summary="Abort a multipart upload (idempotent)",
)
async def abort_upload(body: AbortUploadBody, call: UserCall):
    await call.backends.upload.AbortUpload(
        upload_pb2.AbortUploadRequest(upload_id=body.uploadId, file_id=body.file_id), **call.kwargs
    )
    return {"success": True, "message": "upload aborted"}


@router.post(
    "/get-download-url",
    response_model=DownloadUrlReply,
    responses=_ERRORS,
    summary="A presigned GET URL for one of the caller's uploaded files",
)
async def get_download_url(body: DownloadUrlBody, call: UserCall):
    reply = await call.backends.upload.GetDownloadUrl(
        upload_pb2.GetDownloadUrlRequest(s3_key=body.s3_key), **call.kwargs
    )
    return {"success": True, "url": reply.url}


@router.get(
    "/list",
    response_model=FileListReply,
    responses=_ERRORS,
    summary="The caller's files, newest first",
)
async def list_files(call: UserCall):
    # Every file, from the coordinator's pages of 1,000, streamed (file_lists.py; its
    # v1_entry writes what _file_entry does, faster).
    return await v1_file_list(call)


@router.delete(
    "/delete",
    response_model=MessageReply,
    responses=_ERRORS,
    summary="Delete one of the caller's files and its stored object",
)
async def delete_file(body: DeleteFileBody, call: UserCall):
    await call.backends.upload.DeleteFile(
        upload_pb2.DeleteFileRequest(file_id=body.file_id), **call.kwargs
    )
    return {"success": True, "message": "file deleted"}
