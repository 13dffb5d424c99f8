"""Settings of the upload coordinator, validated at start (a bad value stops the process)."""

from __future__ import annotations

from pydantic import AnyHttpUrl, Field, PostgresDsn, model_validator

from services.common.settings import GrpcServiceSettings, StorageSettings

from .parts import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE

MIB = 1024 * 1024
GIB = 1024 * MIB
TIB = 1024 * GIB
# SigV4 presigned URLs live at most seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


class UploadSettings(GrpcServiceSettings, StorageSettings):
    # Not in reprs: the URL may carry a password.
    cloud_db_uri: PostgresDsn = Field(
        default=PostgresDsn("postgresql://postgres@127.0.0.1:5432/dropfile"), repr=False
    )
    # How long a call waits for an unreachable PostgreSQL (a restart, a failover), retrying
    # what is safe to retry, before it answers UNAVAILABLE: well inside the gateway's
    # GRPC_TIMEOUT_SECONDS. 0: no retry.
    database_retry_seconds: float = Field(default=5.0, ge=0, le=60)
    upload_grpc_port: int = Field(default=50052, ge=0, le=65535)
    # The v1 contract's part size: clients slice files into parts of exactly this size.
    part_size_bytes: int = Field(default=5 * MIB, ge=MIN_PART_SIZE, le=MAX_PART_SIZE)
    max_file_size_bytes: int = Field(default=1024 * MIB, ge=1)
    presigned_url_ttl_seconds: int = Field(default=3600, ge=60, le=MAX_PRESIGN_SECONDS)
    # Where clients reach storage, when not where this process does (a local cluster's S3
    # stand-in is `http://moto:5000` inside and `http://localhost:5000` on the host).
    # Used only to sign the presigned URLs handed out; unset means the S3 endpoint.
    s3_public_endpoint_url: AnyHttpUrl | None = None
    # How long Redis keeps an upload session (PostgreSQL stays the source of truth).
    upload_session_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # The reaper (reaper.py), a worker of this process: every reaper_interval_seconds it
    # marks uploads idle for upload_idle_ttl_seconds (no part recorded, no change) FAILED and
    # aborts their multipart uploads, and aborts multipart uploads no file knows once they
    # are that old. Safe to run in every replica.
    reaper_enabled: bool = True
    reaper_interval_seconds: float = Field(default=300.0, gt=0, le=86400)
    upload_idle_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=365 * 24 * 3600)
    # Idle uploads claimed (and locked) per transaction.
    reaper_batch_size: int = Field(default=100, ge=1, le=1000)
    # The v2 API's largest file. Parts are chosen between min_part_size_bytes and 5 GiB, at
    # most 10,000 of them: 5 TiB is S3's object limit, 48.8 TiB what 10,000 parts can hold.
    v2_max_file_size_bytes: int = Field(default=5 * TIB, ge=1, le=MAX_PARTS * MAX_PART_SIZE)
    # The smallest part the v2 API chooses. S3 needs 5 MiB (every part but the last); only a
    # test store configured for smaller parts may take less.
    min_part_size_bytes: int = Field(default=MIN_PART_SIZE, ge=1, le=MAX_PART_SIZE)
    # Bytes each user may hold: uploads in progress (declared size) and uploaded files.
    # 0 means unlimited.
    user_quota_bytes: int = Field(default=100 * GIB, ge=0)
    # Uploads each user may have in progress at once (started, not yet confirmed): one more
    # is refused with RESOURCE_EXHAUSTED + RetryInfo (HTTP 429, TOO_MANY_UPLOADS). 0 means
    # unlimited.
    max_uploads_in_progress: int = Field(default=100, ge=0)
    # Share links (sharing/links.py): how long a link lives when its creator says nothing, and
    # the longest it may be asked to live.
    share_link_default_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=10 * 365 * 86400)
    share_link_max_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60, le=10 * 365 * 86400)
    # The presigned GET a link redirects to: short, as a new one is made per visit.
    share_download_url_ttl_seconds: int = Field(default=300, ge=10, le=MAX_PRESIGN_SECONDS)
    # bcrypt cost of link passwords (a check costs ~2^rounds), and how many checks run at
    # once (one more is refused UNAVAILABLE with RetryInfo, never queued).
    share_password_bcrypt_rounds: int = Field(default=10, ge=4, le=14)
    share_password_max_pending: int = Field(default=2, ge=1, le=64)
    # Guesses at links, counted in Redis (sharing/throttle.py): per client address, failed
    # resolutions (unknown, expired, revoked or exhausted tokens; wrong passwords); per link
    # and address, and per link across addresses, password attempts (counted before the
    # check). After the free ones, each waits twice as long as the last, from the base
    # delay up to the maximum (429 with Retry-After); forgotten after the window.
    share_guess_free_failures: int = Field(default=10, ge=1, le=10_000)
    share_password_free_failures: int = Field(default=5, ge=1, le=10_000)
    share_link_password_free_failures: int = Field(default=20, ge=1, le=100_000)
    share_guess_base_delay_seconds: float = Field(default=1.0, gt=0, le=3600)
    share_guess_max_delay_seconds: float = Field(default=900.0, gt=0, le=86400)
    share_guess_window_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)

    @model_validator(mode="after")
    def _share_default_within_max(self) -> UploadSettings:
        if self.share_link_default_ttl_seconds > self.share_link_max_ttl_seconds:
            raise ValueError(
                f"share_link_default_ttl_seconds ({self.share_link_default_ttl_seconds}) "
                f"exceeds share_link_max_ttl_seconds ({self.share_link_max_ttl_seconds})"
            )
        return self

    @model_validator(mode="after")
    def _max_size_fits_in_parts(self) -> UploadSettings:
        # S3 allows at most 10,000 parts: a larger limit could never be uploaded.
        ceiling = self.part_size_bytes * MAX_PARTS
        if self.max_file_size_bytes > ceiling:
            raise ValueError(
                f"max_file_size_bytes ({self.max_file_size_bytes}) exceeds {MAX_PARTS} parts of "
                f"part_size_bytes ({self.part_size_bytes}) = {ceiling} bytes"
            )
        return self
