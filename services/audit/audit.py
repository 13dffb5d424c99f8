"""Cross-checking PostgreSQL (the files table) against the bucket, and the repairs that are
safe to make.

Both sides change while the audit runs, so nothing is reported from one look: what the
first pass (the bucket listed, the rows read, the multipart uploads listed) suspects is
looked at again, row and object, and reported only if it still holds. A repair looks once
more, under the row's lock where there is a row.

Only Dropfile's key space is audited (`users/`, where every file's object lives): other
keys in the bucket are none of its business. The listing of objects and the rows' keys are
held in memory (a key and a size each), which bounds the audit to what one process holds.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from services.common.clients import aws_client
from services.common.db import make_engine
from services.common.logs import log_fields
from services.upload.models import File, FileStatus
from services.upload.settings import UploadSettings
from services.upload.status_events import StatusEvents, publisher_client
from services.upload.storage import stored_object

from .report import Action, Finding, FindingKind, Report

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

USERS_PREFIX = "users/"
# An initiation creates its multipart upload, then commits its row: a multipart upload
# younger than this may belong to a row about to appear.
DEFAULT_MULTIPART_MIN_AGE_SECONDS = 60

UNKNOWN_OBJECT_LEFT = (
    "left in place: no row names it, but PostgreSQL may be the side that is wrong (restored "
    "from a backup older than the object, or a row being created), and a deleted object "
    "cannot come back; delete it by hand once you know nobody wants it"
)


@dataclass(frozen=True)
class _Row:
    file_id: uuid.UUID
    user_id: uuid.UUID
    s3_key: str
    status: FileStatus
    size: int
    upload_id: str | None
    completed_at: datetime | None

    def expects_parts_of(self, upload_id: str) -> bool:
        return (
            self.status is FileStatus.UPLOADING
            and self.completed_at is None
            and self.upload_id == upload_id
        )


_ROW_COLUMNS = (
    File.id,
    File.user_id,
    File.s3_key,
    File.status,
    File.size,
    File.upload_id,
    File.completed_at,
)


def run_audit(
    settings: UploadSettings,
    *,
    repair: bool = False,
    multipart_min_age_seconds: int = DEFAULT_MULTIPART_MIN_AGE_SECONDS,
) -> Report:
    """Audits the upload coordinator's database and bucket (its settings name both) and,
    with `repair`, makes the safe repairs. Returns the Report (`report.clean`: nothing
    found)."""
    engine = make_engine(settings.cloud_db_uri, pool_size=1)
    try:
        auditor = Auditor(
            engine=engine,
            s3=aws_client("s3", region=settings.aws_region, endpoint_url=settings.s3_endpoint),
            bucket=settings.s3_bucket,
            status_events=StatusEvents(publisher_client(settings.cloud_rd_uri)),
            multipart_min_age=timedelta(seconds=multipart_min_age_seconds),
        )
        return auditor.run(repair=repair)
    finally:
        engine.dispose()


class Auditor:
    def __init__(
        self,
        *,
        engine: Engine,
        s3: S3Client,
        bucket: str,
        status_events: StatusEvents,
        multipart_min_age: timedelta,
    ) -> None:
        self._engine = engine
        self._s3 = s3
        self._bucket = bucket
        self._status_events = status_events
        self._min_age = multipart_min_age

    def run(self, *, repair: bool) -> Report:
        report = Report(bucket=self._bucket, repaired=repair)
        objects = self._objects()
        rows = self._all_rows()
        uploads = self._multipart_uploads()
        suspects = self._suspects(objects, rows, uploads)
        # A second look at every suspect, row and object, before anything is reported.
        fresh_rows = self._rows_by_key({key for key, _ in suspects})
        for key, upload_id in suspects:
            finding = self._confirmed(key, upload_id, fresh_rows.get(key))
            if finding is not None:
                report.findings.append(finding)
        if repair:
            report.actions = [self._repair(finding) for finding in report.findings]
        log.info("audit finished", extra=log_fields(findings=len(report.findings)))
        return report

    # -- first pass -----------------------------------------------------------------------

    def _suspects(
        self,
        objects: dict[str, int],
        rows: dict[str, _Row],
        uploads: list[tuple[str, str, datetime]],
    ) -> list[tuple[str, str | None]]:
        """(key, multipart upload id or None) of what may be wrong."""
        suspects: list[tuple[str, str | None]] = []
        for key, size in objects.items():
            row = rows.get(key)
            if row is None or (row.status is FileStatus.UPLOADED and row.size != size):
                suspects.append((key, None))
        suspects.extend(
            (row.s3_key, None)
            for row in rows.values()
            if row.status is FileStatus.UPLOADED
            and row.s3_key not in objects
            and row.s3_key.startswith(USERS_PREFIX)
        )
        old_enough = datetime.now(UTC) - self._min_age
        for key, upload_id, initiated in uploads:
            row = rows.get(key)
            if (row is None or not row.expects_parts_of(upload_id)) and initiated <= old_enough:
                suspects.append((key, upload_id))
        return suspects

    # -- second look ----------------------------------------------------------------------

    def _confirmed(self, key: str, upload_id: str | None, row: _Row | None) -> Finding | None:
        file_id = str(row.file_id) if row is not None else None
        if upload_id is not None:
            if row is not None and row.expects_parts_of(upload_id):
                return None
            if not self._multipart_upload_exists(key, upload_id):
                return None
            why = (
                "no file has this key"
                if row is None
                else f"the file is {row.status.value}"
                + (", completed" if row.completed_at is not None else "")
                + ("" if row.upload_id == upload_id else ", with another upload")
            )
            return Finding(
                FindingKind.ORPHAN_MULTIPART_UPLOAD,
                key,
                f"{why}: no upload expects its parts",
                file_id=file_id,
                upload_id=upload_id,
            )
        stored = self._stored_size(key)
        if row is None:
            if stored is None:
                return None
            return Finding(
                FindingKind.UNKNOWN_OBJECT,
                key,
                f"{stored} bytes stored; no file has this key",
                stored_size=stored,
            )
        if row.status is not FileStatus.UPLOADED:
            return None
        if stored is None:
            return Finding(
                FindingKind.MISSING_OBJECT,
                key,
                f"file {file_id} is UPLOADED ({row.size} bytes) but storage has no object",
                file_id=file_id,
                expected_size=row.size,
            )
        if stored != row.size:
            return Finding(
                FindingKind.WRONG_SIZE,
                key,
                f"file {file_id} is UPLOADED with {row.size} bytes; the object has {stored}",
                file_id=file_id,
                expected_size=row.size,
                stored_size=stored,
            )
        return None

    # -- repairs --------------------------------------------------------------------------

    def _repair(self, finding: Finding) -> Action:
        try:
            if finding.kind is FindingKind.ORPHAN_MULTIPART_UPLOAD:
                return self._abort_orphan(finding)
            if finding.kind in (FindingKind.MISSING_OBJECT, FindingKind.WRONG_SIZE):
                return self._fail_file(finding)
            return Action(finding, False, UNKNOWN_OBJECT_LEFT)
        except ClientError as exc:
            return Action(finding, False, f"failed: storage answered {exc}")

    def _abort_orphan(self, finding: Finding) -> Action:
        upload_id = finding.upload_id
        if upload_id is None:  # every orphan finding names its multipart upload
            return Action(finding, False, "left: the finding names no multipart upload")
        row = self._rows_by_key({finding.s3_key}).get(finding.s3_key)
        if row is not None and row.expects_parts_of(upload_id):
            return Action(finding, False, "left: an upload expects its parts now")
        try:
            self._s3.abort_multipart_upload(
                Bucket=self._bucket, Key=finding.s3_key, UploadId=upload_id
            )
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise
        return Action(finding, True, "multipart upload aborted (its parts are gone)")

    def _fail_file(self, finding: Finding) -> Action:
        """Marks the UPLOADED file FAILED if, under its row's lock, its object is still
        missing or of the wrong size. The object (if any) is kept: the owner's DeleteFile
        removes it."""
        file_id = uuid.UUID(finding.file_id or "")
        with self._engine.begin() as conn:
            locked = conn.execute(
                select(File.user_id, File.status, File.size)
                .where(File.id == file_id, File.s3_key == finding.s3_key)
                .with_for_update()
            ).first()
            if locked is None or locked.status is not FileStatus.UPLOADED:
                return Action(finding, False, "left: the file changed meanwhile")
            stored = self._stored_size(finding.s3_key)
            if stored == locked.size:
                return Action(finding, False, "left: storage now holds the right object")
            conn.execute(update(File).where(File.id == file_id).values(status=FileStatus.FAILED))
        self._status_events.changed(
            user_id=locked.user_id, file_id=file_id, status="FAILED", size=locked.size
        )
        kept = "" if stored is None else " (the object is kept: deleting the file removes it)"
        return Action(finding, True, f"file {file_id} marked FAILED{kept}")

    # -- reading both sides ---------------------------------------------------------------

    def _objects(self) -> dict[str, int]:
        paginator = self._s3.get_paginator("list_objects_v2")
        return {
            item["Key"]: item["Size"]
            for page in paginator.paginate(Bucket=self._bucket, Prefix=USERS_PREFIX)
            for item in page.get("Contents", [])
        }

    def _multipart_uploads(self) -> list[tuple[str, str, datetime]]:
        paginator = self._s3.get_paginator("list_multipart_uploads")
        return [
            (item["Key"], item["UploadId"], item["Initiated"])
            for page in paginator.paginate(Bucket=self._bucket, Prefix=USERS_PREFIX)
            for item in page.get("Uploads", [])
        ]

    def _all_rows(self) -> dict[str, _Row]:
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=1000).execute(select(*_ROW_COLUMNS))
            return {row.s3_key: _Row(*row) for row in result}

    def _rows_by_key(self, keys: set[str]) -> dict[str, _Row]:
        if not keys:
            return {}
        with self._engine.connect() as conn:
            return {
                row.s3_key: _Row(*row)
                for row in conn.execute(select(*_ROW_COLUMNS).where(File.s3_key.in_(sorted(keys))))
            }

    def _stored_size(self, key: str) -> int | None:
        stored = stored_object(self._s3, self._bucket, key)
        return stored[0] if stored is not None else None

    def _multipart_upload_exists(self, key: str, upload_id: str) -> bool:
        try:
            self._s3.list_parts(Bucket=self._bucket, Key=key, UploadId=upload_id, MaxParts=1)
        except ClientError as exc:
            if _error_code(exc) == "NoSuchUpload":
                return False
            raise
        return True


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
