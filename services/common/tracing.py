"""OpenTelemetry tracing, off unless OTEL_EXPORTER_OTLP_ENDPOINT names a collector.

When it does, `configure_tracing` installs a tracer provider that batches spans to that
collector over OTLP/gRPC and instruments gRPC (servers and clients, thread-pool and
asyncio: the events service's server, the gateway's clients), so the W3C `traceparent`
travels in gRPC metadata and one request through the gateway and the services is one
trace. The gateway also instruments its FastAPI app
(`Tracing.instrument_app`). When the endpoint is unset nothing is installed or imported:
no exporter, no instrumentor, no cost.

Call it before any gRPC server or channel is created: the instrumentors patch the
`grpc.server` and channel constructors, so objects made earlier stay untraced.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .settings import BaseServiceSettings, url_text

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

# Probes and scrapes every few seconds would be most of the traces and tell nothing.
UNTRACED_HTTP_PATHS = "/healthz,/readyz,/metrics"


@dataclass
class Tracing:
    """The installed tracer provider, for what comes after setup."""

    provider: TracerProvider

    def instrument_app(self, app: FastAPI) -> None:
        """Traces the gateway's HTTP requests (call before the app serves), and flushes
        buffered spans when the app shuts down: uvicorn ends the process by re-raising
        SIGTERM, so exit handlers would never run."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            excluded_urls=UNTRACED_HTTP_PATHS,
            exclude_spans=["receive", "send"],
        )
        serve = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan_then_flush(application: Any) -> AsyncIterator[Any]:
            try:
                async with serve(application) as state:
                    yield state
            finally:
                self.shutdown()

        app.router.lifespan_context = lifespan_then_flush

    def shutdown(self) -> None:
        """Exports what is still buffered; idempotent."""
        self.provider.shutdown()


def configure_tracing(service: str, settings: BaseServiceSettings) -> Tracing | None:
    """Tracing to settings.otel_exporter_otlp_endpoint as `service` (or OTEL_SERVICE_NAME);
    None, with nothing installed, when no endpoint is configured."""
    if settings.otel_exporter_otlp_endpoint is None:
        return None
    endpoint = url_text(settings.otel_exporter_otlp_endpoint)
    # Imported only here: a process without tracing never loads the SDK.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
        GrpcInstrumentorClient,
        GrpcInstrumentorServer,
        filters,
    )
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = settings.otel_service_name or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    # An http:// endpoint is a plaintext channel, https:// uses TLS. Made before the client
    # instrumentor patches channels, so exporting spans makes no spans.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    # Health checks (probes, /readyz) are not worth a trace each.
    worth_tracing = filters.negate(filters.health_check())
    # The instrumentors' constructors carry no annotations (opentelemetry-instrumentation-grpc).
    for instrumentor in (
        GrpcInstrumentorServer(filter_=worth_tracing),  # type: ignore[no-untyped-call]
        # The events service's server is gRPC's asyncio one (grpc_aio.py).
        GrpcAioInstrumentorServer(filter_=worth_tracing),  # type: ignore[no-untyped-call]
        GrpcInstrumentorClient(filter_=worth_tracing),  # type: ignore[no-untyped-call]
        GrpcAioInstrumentorClient(filter_=worth_tracing),  # type: ignore[no-untyped-call]
    ):
        instrumentor.instrument(tracer_provider=provider)
    log.info("tracing: exporting spans as %s to %s", name, endpoint)
    return Tracing(provider)
