"""Clients for Redis and AWS (S3, SQS). AWS credentials and AWS_ENDPOINT_URL come from
botocore's usual chain; settings may name an endpoint explicitly too.

botocore and redis are imported when a first client is made, not with this module: the
gateway takes only GRPC_CHANNEL_OPTIONS from here, and would otherwise carry both
libraries (~18 MB of a process that never uses them)."""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from .settings import UrlSetting, url_text

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    from botocore.loaders import Loader
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# The AWS services Dropfile makes clients for. botocore's legacy endpoint table lists every
# region of every AWS service (~7 MB once loaded, in every process with a client); only
# these services' entries are kept (_EndpointTableTrimmer).
AWS_SERVICES = frozenset({"s3", "sqs"})

# The services' models (JSON files loaded into Python objects: S3's model and endpoint
# rules take ~5 MB) are read once per process and shared by every client; without this,
# each client's session reads its own copy. Sessions stay one per client, so each resolves
# credentials when it is made.
_models: Loader | None = None
_models_lock = threading.Lock()  # guards _models; the loader's cache is a plain dict


# Channel options of every Dropfile gRPC client. A channel spreads its calls over every
# address its target resolves to (round_robin), not only the first: in Kubernetes the
# services are headless, so `upload:50052` resolves to each pod and all replicas share the
# load (a ClusterIP would pin each long-lived HTTP/2 connection, hence every call, to one
# pod). Servers close connections after a while (grpc_server.py), so clients re-resolve
# and find new replicas.
GRPC_CHANNEL_OPTIONS: list[tuple[str, object]] = [
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
]


def redis_client(
    url: str | UrlSetting, *, timeout_seconds: float = 5.0, retries: int = 1
) -> redis.Redis:
    """Each attempt waits `timeout_seconds` at most (to connect, then to be answered),
    and `retries` more are made on a connection error or timeout, after a short pause
    (redis-py applies this both to connecting and to the command: up to (retries + 1)²
    attempts). Explicit, because redis-py's default is 10 retries: against a Redis that
    accepts connections but never answers (a failover in progress), one command would
    take minutes."""
    import redis
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url_text(url),
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries),
        **_redis_options(timeout_seconds),
    )


def async_redis_client(
    url: str | UrlSetting,
    *,
    timeout_seconds: float = 5.0,
    retries: int = 1,
    max_connections: int = 16,
) -> redis.asyncio.Redis:
    """redis_client() for code on an event loop (redis.asyncio), with the same timeouts
    and retries, on at most `max_connections` connections: commands beyond them wait for
    one (up to `timeout_seconds`) instead of opening more (thousands of streams opening
    at once would otherwise open a connection each)."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url_text(url),
        max_connections=max_connections,
        timeout=timeout_seconds,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries),
        **_redis_options(timeout_seconds),
    )
    return redis.asyncio.Redis.from_pool(pool)  # closed with the client


def _redis_options(timeout_seconds: float) -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "health_check_interval": 30,
    }


def _shared_models() -> Loader:
    """The process's one botocore loader (call with _models_lock held)."""
    global _models
    if _models is None:
        from botocore.loaders import JSONFileLoader, Loader

        class _EndpointTableTrimmer(JSONFileLoader):
            """Reads botocore's data files as botocore does, keeping only AWS_SERVICES'
            entries of the legacy endpoint table (`endpoints.json`); every other file,
            and every partition's regions and defaults, as they are."""

            def load_file(self, file_path: str) -> Any:
                data = super().load_file(file_path)
                if data is not None and os.path.basename(file_path) == "endpoints":
                    for partition in data.get("partitions", ()):
                        services = partition.get("services", {})
                        partition["services"] = type(services)(
                            (name, entry)
                            for name, entry in services.items()
                            if name in AWS_SERVICES
                        )
                return data

        _models = Loader(file_loader=_EndpointTableTrimmer())
    return _models


@overload
def aws_client(
    service: Literal["s3"],
    *,
    region: str,
    endpoint_url: str | UrlSetting | None = None,
    max_pool_connections: int = 50,
) -> S3Client: ...
@overload
def aws_client(
    service: Literal["sqs"],
    *,
    region: str,
    endpoint_url: str | UrlSetting | None = None,
    max_pool_connections: int = 50,
) -> SQSClient: ...
def aws_client(
    service: Literal["s3", "sqs"],
    *,
    region: str,
    endpoint_url: str | UrlSetting | None = None,
    max_pool_connections: int = 50,
) -> S3Client | SQSClient:
    """botocore's client for `service`, typed as boto3's (the same client class)."""
    if service not in AWS_SERVICES:
        raise ValueError(f"no endpoint data kept for {service!r}: add it to AWS_SERVICES")
    import botocore.session
    from botocore.config import Config

    endpoint = None if endpoint_url is None else url_text(endpoint_url)
    config = Config(
        region_name=region,
        signature_version="s3v4",
        max_pool_connections=max_pool_connections,
        retries={"mode": "standard", "max_attempts": 3},
        # Local stores (moto, SeaweedFS) answer on one host name: path-style addressing.
        s3={"addressing_style": "path"} if endpoint else {},
        connect_timeout=5,
        read_timeout=30,
    )
    with _models_lock:
        core = botocore.session.Session()
        core.register_component("data_loader", _shared_models())
        # botocore's own client, as boto3's Session.client makes it: boto3 would only add
        # its S3 transfer manager (s3transfer, multiprocessing) that no service uses.
        client = core.create_client(service, endpoint_url=endpoint, config=config)
    return cast("S3Client | SQSClient", client)
