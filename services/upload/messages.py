"""Domain values as protobuf messages and back, for the servicers (servicer.py)."""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from dropfile.upload.v1 import upload_pb2
from services.common.errors import DomainError

from .checksums import ChecksumAlgorithm
from .confirmation import ConfirmOutcome
from .files import FileInfo
from .models import File, FileStatus
from .resume import UploadState
from .store.listing import ListedRow

STATUS = {
    FileStatus.UPLOADING: upload_pb2.FILE_STATUS_UPLOADING,
    FileStatus.UPLOADED: upload_pb2.FILE_STATUS_UPLOADED,
    FileStatus.FAILED: upload_pb2.FILE_STATUS_FAILED,
}
STATUS_BY_NAME = {status.value: message for status, message in STATUS.items()}
OUTCOME = {
    ConfirmOutcome.CONFIRMED: upload_pb2.ConfirmUploadResponse.OUTCOME_CONFIRMED,
    ConfirmOutcome.ALREADY_CONFIRMED: upload_pb2.ConfirmUploadResponse.OUTCOME_ALREADY_CONFIRMED,
    ConfirmOutcome.UNKNOWN_KEY: upload_pb2.ConfirmUploadResponse.OUTCOME_UNKNOWN_KEY,
    ConfirmOutcome.REJECTED: upload_pb2.ConfirmUploadResponse.OUTCOME_REJECTED,
    ConfirmOutcome.NOT_COMPLETED: upload_pb2.ConfirmUploadResponse.OUTCOME_NOT_COMPLETED,
    ConfirmOutcome.STALE: upload_pb2.ConfirmUploadResponse.OUTCOME_STALE,
}
ALGORITHM = {
    ChecksumAlgorithm.SHA256: upload_pb2.CHECKSUM_ALGORITHM_SHA256,
    ChecksumAlgorithm.CRC32C: upload_pb2.CHECKSUM_ALGORITHM_CRC32C,
}
ALGORITHM_OF = {value: key for key, value in ALGORITHM.items()}
STATE = {
    UploadState.RECEIVING_PARTS: upload_pb2.GetUploadResponse.STATE_RECEIVING_PARTS,
    UploadState.COMPLETED: upload_pb2.GetUploadResponse.STATE_COMPLETED,
    UploadState.UPLOADED: upload_pb2.GetUploadResponse.STATE_UPLOADED,
    UploadState.FAILED: upload_pb2.GetUploadResponse.STATE_FAILED,
}

RECORDED = upload_pb2.PartRecordResult(code=grpc.StatusCode.OK.value[0])


def part_record_result(outcome: DomainError | None) -> upload_pb2.PartRecordResult:
    if outcome is None:
        return RECORDED
    return upload_pb2.PartRecordResult(
        code=outcome.code.value[0], message=outcome.message, reason=outcome.reason
    )


def file_message(info: FileInfo) -> upload_pb2.File:
    created_at = Timestamp()
    created_at.FromDatetime(info.created_at)
    return upload_pb2.File(
        file_id=info.file_id,
        file_name=info.file_name,
        mime_type=info.mime_type,
        size=info.size,
        s3_key=info.s3_key,
        status=STATUS[info.status],
        created_at=created_at,
        sha256=info.sha256 or "",
    )


def algorithm_of(file: File) -> upload_pb2.ChecksumAlgorithm.ValueType:
    return (
        ALGORITHM[ChecksumAlgorithm(file.checksum_algorithm)]
        if file.checksum_algorithm
        else upload_pb2.CHECKSUM_ALGORITHM_UNSPECIFIED
    )


def files_page(rows: list[ListedRow], next_page_token: str) -> upload_pb2.ListFilesResponse:
    """A ListFiles reply from a page's rows (store/listing.py: tuples, the creation time in
    microseconds), each added in place: ~3 µs a file, a quarter of going through datetime
    and File objects."""
    reply = upload_pb2.ListFilesResponse(next_page_token=next_page_token)
    add = reply.files.add
    for file_id, name, mime_type, size, s3_key, status, created_us, sha256 in rows:
        seconds, micros = divmod(created_us, 1_000_000)
        add(
            file_id=file_id,
            file_name=name,
            mime_type=mime_type,
            size=size,
            s3_key=s3_key,
            status=STATUS_BY_NAME[status],
            created_at=Timestamp(seconds=seconds, nanos=micros * 1000),
            sha256=sha256 or "",
        )
    return reply
