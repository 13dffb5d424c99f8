"""Faults caused for real: upload coordinators (and a gateway) on a PostgreSQL and a Valkey
of these tests' own (tests/fixtures/engines.py), which the tests stop, restart and flush,
and on moto, behind a proxy that answers like an overloaded S3 where a test asks it to."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from gateway.settings import GatewaySettings
from services.upload.settings import UploadSettings
from tests.conftest import settings_for, wait_until
from tests.fixtures.gateway import serve_gateway
from tests.upload.helpers import RunningUpload, running_upload_server


@pytest.fixture(scope="session")
def fault_bucket(s3) -> str:
    name = f"dropfile-faults-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True)
def engines_running(own_postgres, own_valkey):
    """Whatever a test stopped is running again for the next one."""
    yield
    if not own_postgres.running:
        own_postgres.start()
    if not own_valkey.running:
        own_valkey.start()


@dataclass
class Coordinator:
    running: RunningUpload
    health: health_pb2_grpc.HealthStub

    @property
    def api(self):
        return self.running.stub

    def status(self, service: str = "") -> str:
        reply = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


@pytest.fixture
def coordinator(
    common_settings, own_postgres, own_valkey, fault_bucket
) -> Iterator[Callable[..., Coordinator]]:
    """Starts upload coordinators on the tests' own PostgreSQL and Valkey (settings
    overridable); each is stopped when the test ends."""
    stack = ExitStack()

    def start(**overrides) -> Coordinator:
        values = {
            "cloud_db_uri": own_postgres.url,
            "cloud_rd_uri": own_valkey.url,
            "s3_bucket": fault_bucket,
            "readiness_check_interval_seconds": 0.2,
            **overrides,
        }
        running = stack.enter_context(
            running_upload_server(settings_for(UploadSettings, common_settings, **values))
        )
        channel = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
        return Coordinator(running, health_pb2_grpc.HealthStub(channel))

    with stack:
        yield start


@pytest.fixture
def gateway_in_front(
    common_settings, auth_address, events_server
) -> Iterator[Callable[[int], str]]:
    """Starts gateways (returns their URLs) in front of an upload coordinator of the
    test's (its port), and the session's auth and events services."""
    stack = ExitStack()

    def start(upload_port: int) -> str:
        settings = settings_for(
            GatewaySettings,
            common_settings,
            auth_service_addr=auth_address,
            upload_service_addr=f"127.0.0.1:{upload_port}",
            events_service_addr=f"127.0.0.1:{events_server.port}",
        )
        return stack.enter_context(serve_gateway(settings))

    with stack:
        yield start


@dataclass(frozen=True)
class User:
    user_id: str
    metadata: list


@pytest.fixture
def user(make_token) -> User:
    user_id = str(uuid.uuid4())
    return User(user_id, [("authorization", f"Bearer {make_token(user_id=user_id)}")])


def assert_unavailable(err: grpc.RpcError) -> float:
    """The error is UNAVAILABLE with a RetryInfo; returns its delay in seconds."""
    assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
    status = rpc_status.from_call(err)
    assert status is not None, "no rich status"
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToMilliseconds() / 1000
    pytest.fail("UNAVAILABLE without RetryInfo")


def wait_for_status(
    coordinator: Coordinator, expected: str, service: str = "", timeout: float = 15
) -> None:
    wait_until(
        lambda: coordinator.status(service) == expected,
        timeout=timeout,
        what=f"health of {service!r} to be {expected}",
    )
