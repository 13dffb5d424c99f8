"""Tables the upload coordinator owns: files and their parts.

Parts live in the `chunks` table (the v1 contract's word, kept in the schema): `Part` maps
it, its `part_index` attribute the `chunk_index` column."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from services.common.db import Base


class FileStatus(str, enum.Enum):
    UPLOADING = "UPLOADING"
    UPLOADED = "UPLOADED"
    FAILED = "FAILED"


class PartStatus(str, enum.Enum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class File(Base):
    __tablename__ = "files"

    # Chosen by the client (a UUID); unique across all users.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # Owner. Users belong to the auth service, so no foreign key crosses that boundary.
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    file_name: Mapped[str] = mapped_column(String(1024))
    mime_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    s3_key: Mapped[str] = mapped_column(String(200), unique=True)
    upload_id: Mapped[str | None] = mapped_column(String(1024))
    part_size: Mapped[int] = mapped_column(BigInteger)
    part_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[FileStatus] = mapped_column(
        Enum(FileStatus, name="file_status", native_enum=True), default=FileStatus.UPLOADING
    )
    etag: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    # Set when CompleteMultipartUpload succeeded; storage confirmation comes after.
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    uploaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # v2 uploads: the per-part checksum algorithm ("SHA256", "CRC32C"); None for v1 ones.
    checksum_algorithm: Mapped[str | None] = mapped_column(String(16))
    # The whole file's SHA-256 (lowercase hex) as its uploader declared it.
    sha256: Mapped[str | None] = mapped_column(String(64))
    # v2 uploads of one part the client PUTs as the object itself (a presigned PutObject):
    # no multipart upload in storage; `upload_id` is then one of ours (creation.py).
    single_put: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    parts: Mapped[list[Part]] = relationship(
        back_populates="file",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Part.part_index",
    )

    __table_args__ = (
        # A user's files a page at a time, newest first (migration 0006; store/listing.py).
        Index("ix_files_user_created_id", "user_id", text("created_at DESC"), text("id DESC")),
        # One user's name filters (ILIKE '%text%'), where pg_trgm and btree_gin can be
        # created (migration 0006).
        Index(
            "ix_files_user_name_trgm",
            "user_id",
            "file_name",
            postgresql_using="gin",
            postgresql_ops={"file_name": "gin_trgm_ops"},
        ),
        # The reconciler looks for completed-but-unconfirmed uploads.
        Index("ix_files_status_completed", "status", "completed_at"),
    )


class Part(Base):
    __tablename__ = "chunks"

    file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    part_index: Mapped[int] = mapped_column("chunk_index", Integer, primary_key=True)  # 0-based
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(200))
    status: Mapped[PartStatus] = mapped_column(
        Enum(PartStatus, name="chunk_status", native_enum=True), default=PartStatus.COMPLETED
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # v2 uploads: the part's checksum (base64) as storage verified it; None when unknown.
    checksum: Mapped[str | None] = mapped_column(String(64))

    file: Mapped[File] = relationship(back_populates="parts")


class StorageTombstone(Base):
    """A storage key whose object must be deleted (again) once `delete_after` has passed:
    the last presigned URL that could PUT there (a single-PUT upload's, valid after its
    upload was removed) has expired by then. The reaper deletes the object, then the row;
    no file can be created at the key meanwhile (migration 0008; store/tombstones.py)."""

    __tablename__ = "storage_tombstones"

    s3_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    delete_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    # The reaper takes the due ones, oldest first.
    __table_args__ = (Index("ix_storage_tombstones_delete_after", "delete_after"),)


class ShareLink(Base):
    """A link to one uploaded file that anyone holding it may download (sharing/links.py).
    Only the SHA-256 of its token is kept; deleting the file deletes its links (the
    foreign key cascades)."""

    __tablename__ = "share_links"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), index=True
    )
    # The file's owner, who alone lists and revokes the link (no foreign key to auth).
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # Lowercase hex SHA-256 of the token the link's URL carries.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # bcrypt hash of the link's password; None: no password.
    password_hash: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # None: unlimited downloads.
    max_downloads: Mapped[int | None] = mapped_column(Integer)
    download_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
