"""Readiness follows the dependencies, liveness does not: while PostgreSQL is unreachable
the coordinator's and auth's gRPC health says NOT_SERVING (the readiness probe's
question), while "liveness" (the liveness probe's) stays SERVING; the gateway's /readyz
says 503 and its API answers 503 with Retry-After, /healthz stays 200; all recover when
the dependency does. A Redis outage shows under "redis"; auth, which can sign no one in
without it, is then not ready either."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.upload.server import SERVICE_NAME
from tests.conftest import settings_for, wait_until

from .conftest import wait_for_status

pytestmark = pytest.mark.slow


@contextmanager
def health_of(handle) -> Iterator[Callable[..., int]]:
    """Starts a server made by create_server; yields status(service="") from its gRPC
    health service; stops the server afterwards."""
    handle.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            yield (
                lambda service="": (
                    health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                )
            )
    finally:
        handle.stop(0).wait()


def test_health_follows_postgresql_and_liveness_does_not(coordinator, own_postgres):
    upload_service = coordinator()
    for name in ("", SERVICE_NAME, "postgresql", "redis", "liveness"):
        assert upload_service.status(name) == "SERVING", name

    own_postgres.stop("immediate")
    wait_for_status(upload_service, "NOT_SERVING")
    assert upload_service.status(SERVICE_NAME) == "NOT_SERVING"
    assert upload_service.status("postgresql") == "NOT_SERVING"
    assert upload_service.status("liveness") == "SERVING"

    own_postgres.start()
    wait_for_status(upload_service, "SERVING")
    assert upload_service.status(SERVICE_NAME) == "SERVING"
    assert upload_service.status("postgresql") == "SERVING"


def test_redis_down_shows_but_leaves_the_coordinator_in_service(coordinator, own_valkey):
    """Uploads in progress carry on through a Redis outage (test_redis_outage.py): out of
    service, the replica would end them. The outage shows under "redis"."""
    upload_service = coordinator()
    own_valkey.stop()
    wait_for_status(upload_service, "NOT_SERVING", service="redis")
    assert upload_service.status("") == "SERVING"
    assert upload_service.status("liveness") == "SERVING"
    own_valkey.start()
    wait_for_status(upload_service, "SERVING", service="redis")


@pytest.mark.parametrize("dependency", ["postgresql", "redis"])
def test_auth_is_not_ready_while_a_dependency_is_down(
    common_settings, own_postgres, own_valkey, dependency
):
    from services.auth.server import create_server
    from services.auth.settings import AuthSettings

    engine = own_postgres if dependency == "postgresql" else own_valkey
    handle = create_server(
        settings_for(
            AuthSettings,
            common_settings,
            cloud_db_uri=own_postgres.url,
            cloud_rd_uri=own_valkey.url,
            readiness_check_interval_seconds=0.2,
        ),
        port=0,
    )
    with health_of(handle) as status:
        assert status() == health_pb2.HealthCheckResponse.SERVING
        engine.stop()
        wait_until(
            lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING,
            timeout=15,
            what="auth to be NOT_SERVING",
        )
        assert status(dependency) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert status("liveness") == health_pb2.HealthCheckResponse.SERVING
        engine.start()
        wait_until(
            lambda: status() == health_pb2.HealthCheckResponse.SERVING,
            timeout=15,
            what="auth to be SERVING again",
        )


def test_the_gateway_is_not_ready_and_answers_503_while_the_database_is_down(
    coordinator, gateway_in_front, own_postgres, make_token
):
    upload_service = coordinator(database_retry_seconds=0.3)
    url = gateway_in_front(upload_service.running.port)
    with httpx.Client(base_url=url, timeout=30, cookies={"access_token": make_token()}) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/api/files/list").status_code == 200

        own_postgres.stop("fast")
        readiness = wait_until(
            lambda: (r := client.get("/readyz")).status_code == 503 and r,
            timeout=15,
            what="/readyz to say 503",
        )
        assert readiness.json()["backends"]["upload"] == "NOT_SERVING"
        assert int(readiness.headers["Retry-After"]) >= 1
        assert client.get("/healthz").status_code == 200
        listing = client.get("/api/files/list")
        assert listing.status_code == 503, listing.text
        assert int(listing.headers["Retry-After"]) >= 1
        starting = client.post(
            "/api/files/get-upload-urls",
            json={
                "file_id": "6f1c2a4e-0000-4000-8000-0000000000aa",
                "file_name": "a.bin",
                "file_type": "",
                "file_size": "10",
            },
        )
        assert starting.status_code == 503, starting.text
        assert int(starting.headers["Retry-After"]) >= 1

        own_postgres.start()
        wait_until(
            lambda: client.get("/readyz").status_code == 200, timeout=15, what="/readyz to say 200"
        )
        assert client.get("/api/files/list").status_code == 200


def test_the_events_service_shows_a_redis_outage_and_stays_in_service(common_settings, own_valkey):
    """Confirmations go on without Redis; only live status needs it."""
    from services.events.server import create_server
    from services.events.settings import EventsSettings

    handle = create_server(
        settings_for(
            EventsSettings,
            common_settings,
            cloud_rd_uri=own_valkey.url,
            sqs_queue_url=None,
            readiness_check_interval_seconds=0.2,
        ),
        port=0,
    )
    with health_of(handle) as status:
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        assert status("redis") == serving
        own_valkey.stop()
        wait_until(
            lambda: status("redis") == not_serving, timeout=15, what="events to show Redis down"
        )
        assert status() == serving and status("liveness") == serving
        own_valkey.start()
        wait_until(lambda: status("redis") == serving, timeout=15, what="events to show Redis back")
