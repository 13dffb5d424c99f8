"""UploadService and UploadInternalService over gRPC: protobuf in, a use case's call
(uploads.py), protobuf out. Nothing is decided here."""

from __future__ import annotations

import uuid
from datetime import UTC

from grpc import ServicerContext

from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common.encoded_replies import EncodedReply, encode_reply
from services.common.errors import DomainError, InvalidArgument, Unauthenticated
from services.common.grpc_server import access_log
from services.common.logs import log_fields, request_id_var
from services.common.tokens import Identity, InvalidTokenError, TokenVerifier, current_identity

from .files import file_info
from .messages import (
    ALGORITHM,
    ALGORITHM_OF,
    OUTCOME,
    STATE,
    algorithm_of,
    file_message,
    files_page,
    part_record_result,
)
from .recording import PartToRecord
from .uploads import Uploads
from .validation import PartRef

_RECORD_PART = "/dropfile.upload.v1.UploadService/RecordPart"

# RecordParts: records per call. The gateway sends at most its batch size (64 by default).
MAX_RECORDS_PER_CALL = 500


def caller_id() -> uuid.UUID:
    """The user the interceptor authenticated."""
    identity = current_identity.get()
    if identity is None:  # the interceptor guarantees one; defensive
        raise Unauthenticated("missing access token")
    return _user_id_of(identity)


def _user_id_of(identity: Identity) -> uuid.UUID:
    """Users are UUIDs; a token whose subject is not one cannot own files."""
    try:
        return uuid.UUID(identity.user_id)
    except ValueError:
        raise Unauthenticated(
            "the access token's subject is not a Dropfile user", reason="ACCESS_TOKEN_INVALID"
        ) from None


class UploadServicer(upload_pb2_grpc.UploadServiceServicer):
    def __init__(self, uploads: Uploads, verifier: TokenVerifier) -> None:
        self._uploads = uploads
        self._recording = uploads.recording
        # RecordParts verifies each record's token (the interceptor, the call's).
        self._verifier = verifier

    # The reply is encoded already (up to 10,000 URLs, ~5 MB), never held as a protobuf
    # message: the server's serializer sends it as it is (encoded_replies.py).
    def InitiateUpload(  # type: ignore[override]
        self, request: upload_pb2.InitiateUploadRequest, context: ServicerContext
    ) -> EncodedReply:
        started = self._uploads.initiation.initiate(
            user_id=caller_id(),
            file_id=request.file_id,
            file_name=request.file_name,
            mime_type=request.mime_type,
            file_size=request.file_size,
        )
        # Encoded one URL at a time as each is made: never held as a list either.
        return encode_reply(
            upload_pb2.InitiateUploadResponse(
                upload_id=started.upload_id, part_size=started.part_size, s3_key=started.s3_key
            ),
            "part_urls",
            started.part_urls,
        )

    def RecordPart(
        self, request: upload_pb2.RecordPartRequest, context: ServicerContext
    ) -> upload_pb2.RecordPartResponse:
        self._recording.record_part(
            user_id=caller_id(),
            file_id=request.file_id,
            part_index=request.chunk_index,
            size=request.size,
            etag=request.etag,
            checksum=request.checksum,
        )
        return upload_pb2.RecordPartResponse()

    def RecordParts(
        self, request: upload_pb2.RecordPartsRequest, context: ServicerContext
    ) -> upload_pb2.RecordPartsResponse:
        if len(request.records) > MAX_RECORDS_PER_CALL:
            raise InvalidArgument(f"at most {MAX_RECORDS_PER_CALL} records per call")
        outcomes: list[DomainError | None] = [None] * len(request.records)
        parts: list[PartToRecord] = []
        positions: list[int] = []
        for position, record in enumerate(request.records):
            try:
                user_id = self._caller_of(record.access_token)
            except DomainError as exc:
                outcomes[position] = exc
                continue
            part = record.part
            parts.append(
                PartToRecord(
                    user_id=user_id,
                    file_id=part.file_id,
                    part_index=part.chunk_index,
                    size=part.size,
                    etag=part.etag,
                    checksum=part.checksum,
                )
            )
            positions.append(position)
        for position, outcome in zip(positions, self._recording.record_parts(parts)):
            outcomes[position] = outcome
        for record, outcome in zip(request.records, outcomes):
            if outcome is not None:  # logged as the interceptor logs a refused RecordPart
                with_request_id = request_id_var.set(record.request_id)
                access_log.info(
                    "%s %s (in RecordParts)",
                    _RECORD_PART,
                    outcome.code.name,
                    extra=log_fields(method=_RECORD_PART, code=outcome.code.name),
                )
                request_id_var.reset(with_request_id)
        return upload_pb2.RecordPartsResponse(results=[part_record_result(o) for o in outcomes])

    def _caller_of(self, access_token: str) -> uuid.UUID:
        if not access_token:
            raise Unauthenticated("missing access token", reason="ACCESS_TOKEN_MISSING")
        try:
            return _user_id_of(self._verifier.verify(access_token))
        except InvalidTokenError as exc:
            raise Unauthenticated(str(exc), reason="ACCESS_TOKEN_INVALID") from None

    def GetPartUrls(
        self, request: upload_pb2.GetPartUrlsRequest, context: ServicerContext
    ) -> upload_pb2.GetPartUrlsResponse:
        fresh = self._uploads.part_urls.part_urls(
            user_id=caller_id(),
            file_id=request.file_id,
            first_part_number=request.first_part_number,
            last_part_number=request.last_part_number,
            checksums=list(request.checksums),
        )
        return upload_pb2.GetPartUrlsResponse(
            parts=[
                upload_pb2.PartUrl(
                    part_number=number, url=url, headers=fresh.headers.get(number, {})
                )
                for number, url in fresh.urls
            ],
            expires_in_seconds=fresh.expires_in_seconds,
        )

    def CompleteUpload(
        self, request: upload_pb2.CompleteUploadRequest, context: ServicerContext
    ) -> upload_pb2.CompleteUploadResponse:
        self._uploads.completion.complete(
            user_id=caller_id(),
            file_id=request.file_id,
            upload_id=request.upload_id,
            parts=[PartRef(part_number=p.part_number, etag=p.etag) for p in request.parts],
            use_recorded_parts=request.use_recorded_parts,
            sha256=request.sha256,
        )
        return upload_pb2.CompleteUploadResponse()

    def AbortUpload(
        self, request: upload_pb2.AbortUploadRequest, context: ServicerContext
    ) -> upload_pb2.AbortUploadResponse:
        self._uploads.removal.abort(
            user_id=caller_id(), file_id=request.file_id, upload_id=request.upload_id
        )
        return upload_pb2.AbortUploadResponse()

    def ListFiles(
        self, request: upload_pb2.ListFilesRequest, context: ServicerContext
    ) -> upload_pb2.ListFilesResponse:
        page = self._uploads.files.list_page(
            user_id=caller_id(),
            page_size=request.page_size,
            page_token=request.page_token,
            name_filter=request.name_filter,
        )
        return files_page(page.files, page.next_page_token)

    def GetDownloadUrl(
        self, request: upload_pb2.GetDownloadUrlRequest, context: ServicerContext
    ) -> upload_pb2.GetDownloadUrlResponse:
        download = self._uploads.files.download_url(user_id=caller_id(), s3_key=request.s3_key)
        return upload_pb2.GetDownloadUrlResponse(
            url=download.url, expires_in_seconds=download.expires_in_seconds
        )

    def DeleteFile(
        self, request: upload_pb2.DeleteFileRequest, context: ServicerContext
    ) -> upload_pb2.DeleteFileResponse:
        self._uploads.removal.delete(user_id=caller_id(), file_id=request.file_id)
        return upload_pb2.DeleteFileResponse()

    # -- v2 ------------------------------------------------------------------------------

    def CreateUpload(
        self, request: upload_pb2.CreateUploadRequest, context: ServicerContext
    ) -> upload_pb2.CreateUploadResponse:
        created = self._uploads.creation.create_upload(
            user_id=caller_id(),
            file_id=request.file_id,
            file_name=request.file_name,
            mime_type=request.mime_type,
            file_size=request.file_size,
            checksum_algorithm=ALGORITHM_OF.get(request.checksum_algorithm),
            sha256=request.sha256,
            single_put=request.single_put,
            part_checksum=request.part_checksum,
        )
        reply = upload_pb2.CreateUploadResponse(
            file_id=created.file_id,
            upload_id=created.upload_id,
            s3_key=created.s3_key,
            part_size=created.part_size,
            part_count=created.part_count,
            checksum_algorithm=ALGORITHM[created.checksum_algorithm],
            single_put=created.single_put,
        )
        if created.put_url is not None:
            ((number, url),) = created.put_url.urls
            reply.put_url.CopyFrom(
                upload_pb2.PartUrl(
                    part_number=number, url=url, headers=created.put_url.headers[number]
                )
            )
            reply.put_url_expires_in_seconds = created.put_url.expires_in_seconds
        return reply

    def GetUpload(
        self, request: upload_pb2.GetUploadRequest, context: ServicerContext
    ) -> upload_pb2.GetUploadResponse:
        view = self._uploads.resumption.upload_view(user_id=caller_id(), file_id=request.file_id)
        file = view.file
        return upload_pb2.GetUploadResponse(
            state=STATE[view.state],
            file=file_message(file_info(file)),
            upload_id=file.upload_id or "",
            part_size=file.part_size,
            part_count=file.part_count,
            checksum_algorithm=algorithm_of(file),
            stored_parts=[
                upload_pb2.StoredPart(
                    part_number=part.part_number,
                    size=part.size,
                    etag=part.etag,
                    checksum=part.checksum or "",
                )
                for part in view.stored_parts
            ],
            single_put=file.single_put,
        )

    def GetFile(
        self, request: upload_pb2.GetFileRequest, context: ServicerContext
    ) -> upload_pb2.GetFileResponse:
        file = self._uploads.files.get_file(user_id=caller_id(), file_id=request.file_id)
        return upload_pb2.GetFileResponse(file=file_message(file_info(file)))

    def GetQuota(
        self, request: upload_pb2.GetQuotaRequest, context: ServicerContext
    ) -> upload_pb2.GetQuotaResponse:
        usage, quota = self._uploads.files.quota_of(user_id=caller_id())
        return upload_pb2.GetQuotaResponse(
            used_bytes=usage.used_bytes,
            limit_bytes=quota.limit_bytes,
            uploading_bytes=usage.uploading_bytes,
        )


class UploadInternalServicer(upload_pb2_grpc.UploadInternalServiceServicer):
    def __init__(self, uploads: Uploads) -> None:
        self._confirmation = uploads.confirmation

    def ConfirmUpload(
        self, request: upload_pb2.ConfirmUploadRequest, context: ServicerContext
    ) -> upload_pb2.ConfirmUploadResponse:
        event_time = (
            request.event_time.ToDatetime(tzinfo=UTC) if request.HasField("event_time") else None
        )
        outcome = self._confirmation.confirm(
            s3_key=request.s3_key, size=request.size, etag=request.etag, event_time=event_time
        )
        return upload_pb2.ConfirmUploadResponse(outcome=OUTCOME[outcome])

    def ListPendingConfirmations(
        self, request: upload_pb2.ListPendingConfirmationsRequest, context: ServicerContext
    ) -> upload_pb2.ListPendingConfirmationsResponse:
        pending = self._confirmation.pending_confirmations(
            completed_at_least_seconds_ago=request.completed_at_least_seconds_ago,
            limit=request.limit,
        )
        reply = upload_pb2.ListPendingConfirmationsResponse()
        for upload in pending:
            item = reply.uploads.add(file_id=upload.file_id, s3_key=upload.s3_key, size=upload.size)
            item.completed_at.FromDatetime(upload.completed_at)
        return reply
