"""Settings of the event processor."""

from pydantic import Field

from services.common.settings import GrpcServiceSettings, OptionalHttpUrl, StorageSettings


class EventsSettings(GrpcServiceSettings, StorageSettings):
    # The queue S3 notifies. Without one the SQS poller does not run (the reconciler,
    # GetStats and WatchFileEvents still do).
    sqs_queue_url: OptionalHttpUrl = None
    events_grpc_port: int = Field(default=50053, ge=0, le=65535)
    # Live-status streams one process serves at once: WatchFileEvents calls (each a
    # coroutine on the asyncio server, ~28 KB with gRPC's own), SubscribeFileEvents
    # subscriptions (the gateway's, one per browser tab, ~1-2 KB) and SubscribeFileEvents
    # calls (one per gateway process) each count one; beyond it a new one is refused with
    # RESOURCE_EXHAUSTED and a RetryInfo (429 with Retry-After at the gateway). Needs as
    # many open files when each stream comes on its own connection (the server raises its
    # soft limit to the hard one).
    watch_max_streams: int = Field(default=10_000, ge=1, le=100_000)
    # Streams one user holds across every replica (counted in Redis): one more closes that
    # user's oldest. A replica's streams stop counting watch_stream_lease_seconds after it
    # stops renewing its lease (crashed, or cut off from Redis).
    watch_max_streams_per_user: int = Field(default=8, ge=1, le=1000)
    watch_stream_lease_seconds: int = Field(default=30, ge=3, le=3600)
    # The upload coordinator, whose internal ConfirmUpload RPC marks files UPLOADED.
    upload_service_addr: str = Field(default="127.0.0.1:50052", min_length=1)
    # Deadline of one ConfirmUpload call; exceeding it is retried like an outage.
    upload_rpc_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Long polling: a receive waits this long for messages (also bounds how long stopping takes).
    sqs_wait_time_seconds: int = Field(default=20, ge=0, le=20)
    sqs_batch_size: int = Field(default=10, ge=1, le=10)
    # How long a received message stays hidden from other consumers; extended by a
    # heartbeat while its processing lasts (retries during an outage included).
    sqs_visibility_timeout_seconds: int = Field(default=60, ge=2, le=43200)
    # The redrive policy's maxReceiveCount (the setup command's variable), used only when
    # the queue's own policy cannot be read: a message left undeleted at this receive count
    # is counted as dead-lettered.
    sqs_max_receive_count: int = Field(default=5, ge=1, le=1000)
    # Messages processed at once.
    event_concurrency: int = Field(default=10, ge=1, le=256)
    # Exponential backoff between retries of a transient failure (with jitter).
    event_retry_initial_seconds: float = Field(default=0.5, gt=0, le=60)
    event_retry_max_seconds: float = Field(default=30.0, gt=0, le=900)
    # The reconciler confirms completed uploads by asking storage (HEAD). Without a queue it
    # is the only path and runs every second; beside a queue it is a slower safety net for
    # lost events and leaves fresh completions to them. Unset values pick those defaults.
    reconcile_interval_seconds: float | None = Field(default=None, gt=0, le=3600)
    reconcile_grace_seconds: int | None = Field(default=None, ge=0, le=86400)
    reconcile_batch_size: int = Field(default=100, ge=1, le=1000)
    # Uploads of a batch checked at once (a HEAD, then ConfirmUpload): each waits on
    # storage and the coordinator, so a burst of completions is confirmed in parallel.
    reconcile_concurrency: int = Field(default=8, ge=1, le=64)

    @property
    def reconcile_every(self) -> float:
        if self.reconcile_interval_seconds is not None:
            return self.reconcile_interval_seconds
        return 30.0 if self.sqs_queue_url is not None else 1.0

    @property
    def reconcile_after(self) -> int:
        if self.reconcile_grace_seconds is not None:
            return self.reconcile_grace_seconds
        return 120 if self.sqs_queue_url is not None else 0
