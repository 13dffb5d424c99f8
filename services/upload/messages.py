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

STATUS = {
    FileStatus.UPLOADING: upload_pb2.FILE_STATUS_UPLOADING,
    FileStatus.UPLOADED: upload_pb2.FILE_STATUS_UPLOADED,
    FileStatus.FAILED: upload_pb2.FILE_STATUS_FAILED,
}
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
