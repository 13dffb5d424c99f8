"""The event processor process: `python -m services.events.server`. Serves EventsService
(plus health and reflection) on gRPC's asyncio server (services/common/grpc_aio.py: an open
WatchFileEvents stream is a coroutine, not a thread) and runs its workers: the SQS poller
and the reconciler on threads of their own, the file status hub behind WatchFileEvents on
the server's event loop."""

from __future__ import annotations

import logging

import grpc

from dropfile.events.v1 import events_pb2, events_pb2_grpc
from services.common import keys
from services.common.clients import (
    GRPC_CHANNEL_OPTIONS,
    async_redis_client,
    aws_client,
    redis_client,
)
from services.common.grpc_aio import AioServerHandle, build_aio_server
from services.common.grpc_server import AccessPolicy, run_service
from services.common.readiness import ReadinessWatch, redis
from services.common.settings import url_text
from services.common.tokens import verifier_for

from .poller import QueuePoller
from .processing import EventProcessor, RetryPolicy
from .reconciler import Reconciler
from .servicer import EventsServicer
from .settings import EventsSettings
from .stats import ProcessingStats
from .storage import stored_objects
from .stream_limits import StreamLimits
from .upload_client import UploadConfirmer
from .watch import FileEventHub, feed_client

log = logging.getLogger(__name__)

# gRPC waits up to two minutes between reconnection attempts by default, failing calls
# meanwhile: after an upload-service restart, confirmations would stall that long.
CHANNEL_OPTIONS = [
    *GRPC_CHANNEL_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
]

SERVICE_NAME = events_pb2.DESCRIPTOR.services_by_name["EventsService"].full_name


def create_poller(
    settings: EventsSettings, queue_url: str, *, service_token: str, stats: ProcessingStats
) -> QueuePoller:
    """The SQS worker of `queue_url`, with its channel to the upload coordinator (closed when
    it stops)."""
    channel = grpc.insecure_channel(settings.upload_service_addr, options=CHANNEL_OPTIONS)
    processor = EventProcessor(
        bucket=settings.s3_bucket,
        confirmer=UploadConfirmer(
            channel, service_token=service_token, timeout=settings.upload_rpc_timeout_seconds
        ),
        stats=stats,
        retry=RetryPolicy(
            initial_seconds=settings.event_retry_initial_seconds,
            max_seconds=settings.event_retry_max_seconds,
        ),
    )
    return QueuePoller(
        sqs=aws_client(
            "sqs",
            region=settings.aws_region,
            endpoint_url=settings.sqs_endpoint,
            max_pool_connections=settings.event_concurrency + 4,
        ),
        queue_url=queue_url,
        processor=processor,
        stats=stats,
        wait_time_seconds=settings.sqs_wait_time_seconds,
        batch_size=settings.sqs_batch_size,
        visibility_timeout_seconds=settings.sqs_visibility_timeout_seconds,
        concurrency=settings.event_concurrency,
        max_receive_count=settings.sqs_max_receive_count,
        on_stopped=channel.close,
    )


def create_reconciler(
    settings: EventsSettings, *, service_token: str, stats: ProcessingStats
) -> Reconciler:
    """The storage reconciler, with its own channel to the upload coordinator."""
    channel = grpc.insecure_channel(settings.upload_service_addr, options=CHANNEL_OPTIONS)
    return Reconciler(
        confirmer=UploadConfirmer(
            channel, service_token=service_token, timeout=settings.upload_rpc_timeout_seconds
        ),
        storage=stored_objects(settings),
        interval=settings.reconcile_every,
        grace_seconds=settings.reconcile_after,
        batch_size=settings.reconcile_batch_size,
        concurrency=settings.reconcile_concurrency,
        stats=stats,
        on_stopped=channel.close,
    )


def create_server(settings: EventsSettings, *, port: int | None = None) -> AioServerHandle:
    stats = ProcessingStats()
    token = keys.service_token(settings, settings.service_token)
    verifier = verifier_for(settings, keys.public_key_pem(settings, settings.public_key))
    hubs: list[FileEventHub] = []

    def register(server: grpc.aio.Server) -> list[str]:
        # On the server's loop: the hub's asyncio clients belong to it.
        hub = FileEventHub(
            feed_client(settings.cloud_rd_uri),
            max_streams=settings.watch_max_streams,
            limits=StreamLimits(
                async_redis_client(settings.cloud_rd_uri),
                per_user=settings.watch_max_streams_per_user,
                lease_seconds=settings.watch_stream_lease_seconds,
            ),
            revocations=verifier.revocations,
        )
        hubs.append(hub)
        events_pb2_grpc.add_EventsServiceServicer_to_server(
            EventsServicer(stats, hub, verifier), server
        )
        return [SERVICE_NAME]

    handle = build_aio_server(
        host=settings.dropfile_bind_host,
        port=settings.events_grpc_port if port is None else port,
        verifier=verifier,
        service_token=token,
        # SubscribeFileEvents is the gateway's (the service credential); it carries many
        # users' subscriptions, each with its own token, verified one by one.
        policy=AccessPolicy(internal_methods={f"/{SERVICE_NAME}/SubscribeFileEvents"}),
        register=register,
    )
    # Stopped first: open streams end at once (clients reconnect elsewhere) instead of
    # holding the server's graceful stop for its whole grace period.
    handle.loop_workers.extend(hubs)
    if settings.sqs_queue_url is not None:
        handle.workers.append(
            create_poller(
                settings, url_text(settings.sqs_queue_url), service_token=token, stats=stats
            )
        )
    else:
        log.info("SQS_QUEUE_URL is not set: uploads are confirmed by asking storage")
    handle.workers.append(create_reconciler(settings, service_token=token, stats=stats))
    # Redis's outage shows under "redis" but leaves the replica in service: confirmations
    # (SQS, the reconciler) go on without it, and only live-status streams need it (they
    # end with UNAVAILABLE and the web app polls meanwhile).
    handle.readiness = ReadinessWatch(
        handle.health,
        handle.service_names,
        [
            redis(
                redis_client(settings.cloud_rd_uri, timeout_seconds=1.0, retries=0), required=False
            ),
        ],
        interval=settings.readiness_check_interval_seconds,
    )
    return handle


def main() -> None:
    run_service("events", EventsSettings, create_server)


if __name__ == "__main__":
    main()
