"""Clients for Redis and AWS (S3, SQS). AWS credentials and AWS_ENDPOINT_URL come from
boto3's usual chain; settings may name an endpoint explicitly too."""
from __future__ import annotations

import json
import threading

import boto3
import botocore.loaders
import botocore.session
import redis
from botocore.config import Config

# The services' models (JSON files loaded into Python objects: ~12 MB for S3) are read once
# per process and shared by every client; without this, each client's session reads its
# own copy. Sessions stay one per client, so each resolves credentials when it is made.
_models = botocore.loaders.create_loader()
_models_lock = threading.Lock()  # the loader's cache is a plain dict


# Channel options of every Dropfile gRPC client. A channel spreads its calls over every
# address its target resolves to (round_robin), not only the first: in Kubernetes the
# services are headless, so `upload:50052` resolves to each pod and all replicas share the
# load (a ClusterIP would pin each long-lived HTTP/2 connection, hence every call, to one
# pod). Servers close connections after a while (grpc_server.py), so clients re-resolve
# and find new replicas.
GRPC_CHANNEL_OPTIONS: list[tuple[str, object]] = [
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
]


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )


def aws_client(service: str, *, region: str, endpoint_url: str | None = None,
               max_pool_connections: int = 50):
    config = Config(
        region_name=region,
        signature_version="s3v4",
        max_pool_connections=max_pool_connections,
        retries={"mode": "standard", "max_attempts": 3},
        # Local stores (moto, SeaweedFS) answer on one host name: path-style addressing.
        s3={"addressing_style": "path"} if endpoint_url else {},
        connect_timeout=5,
        read_timeout=30,
    )
    with _models_lock:
        core = botocore.session.Session()
        core.register_component("data_loader", _models)
        return boto3.session.Session(botocore_session=core).client(
            service, endpoint_url=endpoint_url, config=config)
