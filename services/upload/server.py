"""The upload coordinator process: `python -m services.upload.server`."""

from __future__ import annotations

import grpc

from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common import keys
from services.common.clients import aws_client, redis_client
from services.common.db import Database, make_engine
from services.common.grpc_server import AccessPolicy, ServerHandle, build_server, run_service
from services.common.readiness import ReadinessWatch, postgresql, redis
from services.common.tokens import verifier_for

from .core import UploadCore
from .quota import Quota, UploadsInProgressLimit
from .reaper import create_reaper
from .servicer import UploadInternalServicer, UploadServicer
from .sessions import UploadSessions
from .settings import UploadSettings
from .sharing.server import SHARE_INTERNAL_SERVICE_NAME, create_sharing, register_sharing
from .status_events import StatusEvents, publisher_client
from .storage import Storage
from .store import UploadStore
from .uploads import Uploads, compose

SERVICE_NAME = upload_pb2.DESCRIPTOR.services_by_name["UploadService"].full_name
INTERNAL_SERVICE_NAME = upload_pb2.DESCRIPTOR.services_by_name["UploadInternalService"].full_name
# Upload sessions are a cache of PostgreSQL (sessions.py): a Redis that does not answer
# within this is treated as absent, at once and without retries, so that a hanging Redis
# delays a call by about a second, not by redis-py's timeouts times its retries.
SESSION_CACHE_TIMEOUT_SECONDS = 1.0


def create_uploads(settings: UploadSettings) -> Uploads:
    """The use cases, composed around a core with its database, Redis and S3 clients."""
    db = Database(
        make_engine(settings.cloud_db_uri, pool_size=settings.grpc_max_workers // 2 or 1),
        retry_seconds=settings.database_retry_seconds,
    )
    # RecordPart's single upsert commits by itself: one round trip, on a pool of its own
    # with a connection per worker thread (a smaller pool would open and close a
    # PostgreSQL connection, a new backend process, per call when every worker records).
    autocommit = make_engine(
        settings.cloud_db_uri,
        pool_size=settings.grpc_max_workers,
        isolation_level="AUTOCOMMIT",
        pre_ping=False,
    )
    s3 = aws_client(
        "s3",
        region=settings.aws_region,
        endpoint_url=settings.s3_endpoint,
        max_pool_connections=max(settings.grpc_max_workers, 10),
    )
    # Presigning is local signing, no request: a client of its own makes URLs for the
    # address clients use, whatever endpoint this process talks to.
    presigner = (
        aws_client("s3", region=settings.aws_region, endpoint_url=settings.s3_public_endpoint_url)
        if settings.s3_public_endpoint_url
        else None
    )
    core = UploadCore(
        store=UploadStore(db, autocommit=autocommit),
        storage=Storage(s3, settings.s3_bucket, presigner=presigner),
        sessions=UploadSessions(
            redis_client(
                settings.cloud_rd_uri, timeout_seconds=SESSION_CACHE_TIMEOUT_SECONDS, retries=0
            ),
            ttl_seconds=settings.upload_session_ttl_seconds,
        ),
        url_ttl_seconds=settings.presigned_url_ttl_seconds,
        status_events=StatusEvents(publisher_client(settings.cloud_rd_uri)),
        quota=Quota(settings.user_quota_bytes),
        uploads_limit=UploadsInProgressLimit(settings.max_uploads_in_progress),
    )
    return compose(
        core,
        part_size=settings.part_size_bytes,
        max_file_size=settings.max_file_size_bytes,
        v2_max_file_size=settings.v2_max_file_size_bytes,
        min_part_size=settings.min_part_size_bytes,
    )


def create_server(settings: UploadSettings, *, port: int | None = None) -> ServerHandle:
    uploads = create_uploads(settings)
    sharing = create_sharing(settings)
    public_pem = keys.public_key_pem(settings, settings.public_key)
    verifier = verifier_for(settings, public_pem)

    def register(server: grpc.Server) -> list[str]:
        upload_pb2_grpc.add_UploadServiceServicer_to_server(
            UploadServicer(uploads, verifier), server
        )
        upload_pb2_grpc.add_UploadInternalServiceServicer_to_server(
            UploadInternalServicer(uploads), server
        )
        return [SERVICE_NAME, INTERNAL_SERVICE_NAME, *register_sharing(server, sharing)]

    handle = build_server(
        host=settings.dropfile_bind_host,
        port=settings.upload_grpc_port if port is None else port,
        max_workers=settings.grpc_max_workers,
        verifier=verifier,
        service_token=keys.service_token(settings, settings.service_token),
        policy=AccessPolicy(
            internal_services={INTERNAL_SERVICE_NAME, SHARE_INTERNAL_SERVICE_NAME},
            frequent_methods={f"/{SERVICE_NAME}/RecordPart", f"/{SERVICE_NAME}/RecordParts"},
            per_record_token_methods={f"/{SERVICE_NAME}/RecordParts"},
        ),
        register=register,
    )
    if settings.reaper_enabled:
        handle.workers.append(create_reaper(settings))
    # Not ready without PostgreSQL. Redis's outage shows under "redis" but leaves the
    # replica in service: upload sessions are a cache of PostgreSQL, and callers whose
    # sign-out this process checked before keep their last answer (revocations.py), so
    # the uploads in progress here carry on; out of service, they would stop.
    handle.readiness = ReadinessWatch(
        handle.health,
        handle.service_names,
        [
            postgresql(settings.cloud_db_uri),
            redis(
                redis_client(
                    settings.cloud_rd_uri, timeout_seconds=SESSION_CACHE_TIMEOUT_SECONDS, retries=0
                ),
                required=False,
            ),
        ],
        interval=settings.readiness_check_interval_seconds,
    )
    return handle


def main() -> None:
    run_service("upload", UploadSettings, create_server)


if __name__ == "__main__":
    main()
