"""Dropfile's gRPC clients spread calls over every address a service's name resolves to
(as a headless Kubernetes Service resolves to each pod), and servers age connections out
so that clients find replicas added later."""

from __future__ import annotations

from collections import Counter
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.settings import GatewaySettings
from services.common.clients import GRPC_CHANNEL_OPTIONS
from services.common.grpc_server import CONNECTION_AGING


@pytest.fixture
def two_replicas():
    """Two servers that answer the same health check differently, telling them apart."""
    servers, ports = [], []
    for status in (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        servicer.set("replica", status)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        servers.append(server)
    # One name, two addresses: what DNS answers for a headless Service with two pods.
    yield "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    for server in servers:
        server.stop(0)


def _answers(target: str, options, calls: int = 20) -> Counter:
    with grpc.insecure_channel(target, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return Counter(
            stub.Check(
                health_pb2.HealthCheckRequest(service="replica"), timeout=10, wait_for_ready=True
            ).status
            for _ in range(calls)
        )


def test_calls_are_spread_over_every_replica(two_replicas):
    answers = _answers(two_replicas, GRPC_CHANNEL_OPTIONS)
    assert answers[health_pb2.HealthCheckResponse.SERVING] >= 5, answers
    assert answers[health_pb2.HealthCheckResponse.NOT_SERVING] >= 5, answers


def test_without_the_options_one_replica_takes_everything(two_replicas):
    # gRPC's default (pick_first): what the options above are for.
    assert len(_answers(two_replicas, [])) == 1


def test_aged_connections_let_the_longest_stream_finish():
    ages = dict(CONNECTION_AGING)
    assert ages["grpc.max_connection_age_ms"] <= 10 * 60 * 1000
    longest_stream_ms = GatewaySettings().sse_max_stream_seconds * 1000
    assert ages["grpc.max_connection_age_grace_ms"] > longest_stream_ms
