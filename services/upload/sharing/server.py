"""Share links' part of the upload coordinator's server: the domain object with its own
small database pool, Redis client and presigner, and the registration of its two gRPC
services (server.py mounts them beside UploadService)."""

from __future__ import annotations

import grpc

from dropfile.upload.v1 import share_pb2, share_pb2_grpc
from services.common.clients import aws_client, redis_client
from services.common.db import Database, make_engine

from ..settings import UploadSettings
from ..storage import Storage
from .links import LinkPasswords, Sharing
from .servicer import ShareInternalServicer, ShareServicer
from .store import ShareStore
from .throttle import GuessPolicy, GuessThrottle

SHARE_SERVICE_NAME = share_pb2.DESCRIPTOR.services_by_name["ShareService"].full_name
SHARE_INTERNAL_SERVICE_NAME = share_pb2.DESCRIPTOR.services_by_name[
    "ShareInternalService"
].full_name
# Link calls are a few per download: a small pool of their own.
POOL_SIZE = 4
# The limits' Redis answers within this, or the call is refused (503): never unlimited.
THROTTLE_TIMEOUT_SECONDS = 2.0


def create_sharing(settings: UploadSettings) -> Sharing:
    db = Database(
        make_engine(settings.cloud_db_uri, pool_size=POOL_SIZE),
        retry_seconds=settings.database_retry_seconds,
    )
    # Only presigns (local signing, no request): the address clients reach storage at.
    presigner = aws_client(
        "s3",
        region=settings.aws_region,
        endpoint_url=settings.s3_public_endpoint_url or settings.s3_endpoint,
        max_pool_connections=1,
    )
    return Sharing(
        store=ShareStore(db),
        presigner=Storage(presigner, settings.s3_bucket),
        throttle=GuessThrottle(
            redis_client(
                settings.cloud_rd_uri, timeout_seconds=THROTTLE_TIMEOUT_SECONDS, retries=1
            ),
            GuessPolicy(
                guess_free_failures=settings.share_guess_free_failures,
                password_free_failures=settings.share_password_free_failures,
                link_password_free_failures=settings.share_link_password_free_failures,
                base_delay_seconds=settings.share_guess_base_delay_seconds,
                max_delay_seconds=settings.share_guess_max_delay_seconds,
                window_seconds=settings.share_guess_window_seconds,
            ),
        ),
        passwords=LinkPasswords(
            settings.share_password_bcrypt_rounds, settings.share_password_max_pending
        ),
        default_ttl_seconds=settings.share_link_default_ttl_seconds,
        max_ttl_seconds=settings.share_link_max_ttl_seconds,
        download_url_ttl_seconds=settings.share_download_url_ttl_seconds,
    )


def register_sharing(server: grpc.Server, sharing: Sharing) -> list[str]:
    """Adds ShareService (users) and ShareInternalService (the gateway, with the service
    credential); returns their full names."""
    share_pb2_grpc.add_ShareServiceServicer_to_server(ShareServicer(sharing), server)
    share_pb2_grpc.add_ShareInternalServiceServicer_to_server(
        ShareInternalServicer(sharing), server
    )
    return [SHARE_SERVICE_NAME, SHARE_INTERNAL_SERVICE_NAME]
