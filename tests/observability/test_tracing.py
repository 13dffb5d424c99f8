"""OpenTelemetry tracing, for real: a collector of the test's own (an OTLP/gRPC TraceService
on a local port) receives the spans of `python -m gateway` and `python -m
services.upload.server`, and one gateway request is one trace across both processes. With
no OTEL_EXPORTER_OTLP_ENDPOINT, nothing of OpenTelemetry is installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.conftest import wait_until
from tools.processes import ChildProcess, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SERVER, CLIENT = trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT
LIST_FILES = "/dropfile.upload.v1.UploadService/ListFiles"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """What an OpenTelemetry collector's OTLP/gRPC receiver does, minus the forwarding."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: list[ReceivedSpan] = []

    def Export(self, request, context):
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            ReceivedSpan(
                                attributes.get("service.name", ""),
                                span.name,
                                span.kind,
                                span.trace_id,
                                span.span_id,
                                span.parent_span_id,
                            )
                        )
        return trace_service_pb2.ExportTraceServiceResponse()

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)


@pytest.fixture
def collector():
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"http://127.0.0.1:{port}"
    server.stop(0).wait()


def _base_env(tmp_path: Path) -> dict[str, str]:
    # Nothing inherited: no OTEL_* or AWS_* variable of the test run leaks in.
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
        "PYTHONUNBUFFERED": "1",
        "DROPFILE_KEYS_DIR": str(tmp_path / "keys"),
    }


def _start(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> ChildProcess:
    return ChildProcess(argv[-1], argv, cwd=cwd, env=env, log=log).start()


def _stop(process: ChildProcess) -> None:
    if process.running:
        process.signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{process.argv} did not stop:\n{process.log_text()}")


def test_a_gateway_request_is_one_trace_across_gateway_and_upload(
    collector, tmp_path, database_url, redis_url, storage, key_pair, service_token, make_token
):
    servicer, endpoint = collector
    _, public_pem = key_pair
    upload_port, http_port = free_port(), free_port()
    upload_env = {
        **_base_env(tmp_path),
        "DROPFILE_ENV": "production",
        "UPLOAD_GRPC_PORT": str(upload_port),
        "CLOUD_DB_URI": database_url,
        "CLOUD_RD_URI": redis_url,
        "AWS_ENDPOINT_URL": storage["endpoint"],
        "AWS_REGION": storage["region"],
        "S3_BUCKET": storage["bucket"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PUBLIC_KEY": public_pem,
        "SERVICE_TOKEN": service_token,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
    }
    gateway_env = {
        **_base_env(tmp_path),
        "DROPFILE_ENV": "development",
        "DROPFILE_HTTP_PORT": str(http_port),
        # upload answers every backend's health check in /readyz.
        **{
            f"{name}_SERVICE_ADDR": f"127.0.0.1:{upload_port}"
            for name in ("AUTH", "UPLOAD", "EVENTS")
        },
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "gateway-under-test",
    }
    logs = {name: tmp_path / f"{name}.log" for name in ("upload", "gateway")}
    upload = _start(
        [sys.executable, "-m", "services.upload.server"], upload_env, tmp_path, logs["upload"]
    )
    gateway = _start([sys.executable, "-m", "gateway"], gateway_env, tmp_path, logs["gateway"])
    try:
        user_id = str(uuid.uuid4())
        cookie = {"Cookie": f"access_token={make_token(user_id=user_id)}"}
        url = f"http://127.0.0.1:{http_port}/api/files/list"

        def listed():
            if not (upload.running and gateway.running):
                pytest.fail("a process exited:\n" + "\n".join(p.read_text() for p in logs.values()))
            try:
                return httpx.get(url, headers=cookie, timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(listed, timeout=60, interval=0.25, what="the gateway to list files")
        # Probes are not traced: neither /readyz nor the health checks it makes.
        assert httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=5).status_code == 200
    finally:
        # Stopping flushes the spans still buffered (the gateway as its app shuts down,
        # upload when the process exits).
        _stop(gateway)
        _stop(upload)

    spans = servicer.received()
    services = {span.service for span in spans}
    assert {"gateway-under-test", "upload"} <= services, spans
    upload_server = [
        s for s in spans if s.service == "upload" and s.name == LIST_FILES and s.kind == SERVER
    ]
    assert upload_server, spans
    # The last (successful) request: its upload span's parent is the gateway's gRPC call.
    served = upload_server[-1]
    calls = {s.span_id: s for s in spans if s.service == "gateway-under-test"}
    client = calls.get(served.parent_span_id)
    assert client is not None and client.kind == CLIENT and client.name == LIST_FILES, spans
    assert client.trace_id == served.trace_id
    # ... made while the gateway served the HTTP request, in the same trace.
    http = [s for s in calls.values() if s.kind == SERVER and s.trace_id == served.trace_id]
    assert http and "/api/files/list" in http[0].name, spans
    assert client.parent_span_id == http[0].span_id
    assert len({s.trace_id for s in spans if s.trace_id == served.trace_id}) == 1
    assert not any("grpc.health" in s.name or "readyz" in s.name for s in spans), spans


PROBE = """
import json, sys, grpc, grpc.aio
from opentelemetry import trace
from services.common.tracing import configure_tracing
from gateway.settings import GatewaySettings
tracing = configure_tracing("gateway", GatewaySettings())
server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(1))
print(json.dumps({
    "configured": tracing is not None,
    "provider": type(trace.get_tracer_provider()).__name__,
    "sdk_loaded": "opentelemetry.sdk.trace" in sys.modules,
    "exporter_loaded": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter" in sys.modules,
    "grpc_instrumented": "opentelemetry.instrumentation.grpc" in sys.modules
                         and grpc.server.__module__ != "grpc",
    "aio_instrumented": grpc.aio.insecure_channel.__module__ != "grpc.aio._channel",
}))
"""


def _probe(tmp_path: Path, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_base_env(tmp_path), **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_an_endpoint_nothing_is_installed(tmp_path):
    assert _probe(tmp_path) == {
        "configured": False,
        "provider": "ProxyTracerProvider",
        "sdk_loaded": False,
        "exporter_loaded": False,
        "grpc_instrumented": False,
        "aio_instrumented": False,
    }


def test_with_an_endpoint_the_exporter_and_instrumentors_are_installed(tmp_path):
    # Nothing listens there: spans would be dropped, which is all this probe could do.
    found = _probe(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert found == {
        "configured": True,
        "provider": "TracerProvider",
        "sdk_loaded": True,
        "exporter_loaded": True,
        "grpc_instrumented": True,
        "aio_instrumented": True,
    }


def test_a_bad_endpoint_stops_the_process_with_a_clear_message(tmp_path):
    env = {**_base_env(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stderr
