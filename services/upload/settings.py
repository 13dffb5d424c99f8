"""Settings of the upload coordinator, validated at start (a bad value stops the process)."""
from __future__ import annotations

from pydantic import Field, model_validator

from services.common.settings import GrpcServiceSettings, StorageSettings

from .parts import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE

MIB = 1024 * 1024
# SigV4 presigned URLs live at most seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


class UploadSettings(GrpcServiceSettings, StorageSettings):
    cloud_db_uri: str = Field(default="postgresql://postgres@127.0.0.1:5432/dropfile", min_length=1)
    cloud_rd_uri: str = Field(default="redis://127.0.0.1:6379/0", min_length=1)
    upload_grpc_port: int = Field(default=50052, ge=0, le=65535)
    # The v1 contract's part size: clients slice files into parts of exactly this size.
    part_size_bytes: int = Field(default=5 * MIB, ge=MIN_PART_SIZE, le=MAX_PART_SIZE)
    max_file_size_bytes: int = Field(default=1024 * MIB, ge=1)
    presigned_url_ttl_seconds: int = Field(default=3600, ge=60, le=MAX_PRESIGN_SECONDS)
    # How long Redis keeps an upload session (PostgreSQL stays the source of truth).
    upload_session_ttl_seconds: int = Field(default=24 * 3600, ge=60)

    @model_validator(mode="after")
    def _max_size_fits_in_parts(self) -> "UploadSettings":
        # S3 allows at most 10,000 parts: a larger limit could never be uploaded.
        ceiling = self.part_size_bytes * MAX_PARTS
        if self.max_file_size_bytes > ceiling:
            raise ValueError(
                f"max_file_size_bytes ({self.max_file_size_bytes}) exceeds {MAX_PARTS} parts of "
                f"part_size_bytes ({self.part_size_bytes}) = {ceiling} bytes"
            )
        return self
