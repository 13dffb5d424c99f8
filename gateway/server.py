"""The gateway process: `python -m gateway` serves HTTP with uvicorn (uvloop, httptools,
and gateway/http_protocol.py's limits on slow request heads)."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from services.common.keys import MissingSecretError
from services.common.logs import configure_logging
from services.common.memory import map_large_blocks_apart
from services.common.metrics import start_metrics_server
from services.common.process_limits import raise_open_files_limit
from services.common.settings import load_settings
from services.common.tracing import configure_tracing

from .app import create_app
from .http_protocol import edge_protocol
from .settings import GatewaySettings


def main() -> None:
    map_large_blocks_apart()
    raise_open_files_limit()  # a connection per live-status (SSE) client
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level)
    tracing = configure_tracing("gateway", settings)  # before the app opens its channels
    try:
        app = create_app(settings)
    except MissingSecretError as exc:
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if tracing is not None:
        tracing.instrument_app(app)
    try:
        start_metrics_server(settings.metrics_port, settings.metrics_host)
    except OSError as exc:
        print(f"gateway: cannot start: metrics port: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    config = uvicorn_config(
        app, settings, host=settings.dropfile_http_host, port=settings.dropfile_http_port
    )
    uvicorn.Server(config).run()


def uvicorn_config(app: FastAPI, settings: GatewaySettings, **options: Any) -> uvicorn.Config:
    """How the gateway is served (uvloop, httptools), with its limits on slow and
    numerous connections; `options` add to uvicorn.Config's (the tests' server uses this
    too)."""
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=edge_protocol(
            header_timeout=settings.http_header_timeout_seconds,
            max_header_bytes=settings.http_max_header_bytes,
        ),
        # Beyond this many connections (or requests in progress), requests are answered
        # 503 at once instead of exhausting the process.
        limit_concurrency=settings.http_max_connections,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        workers=1,
        log_config=None,  # keep the JSON logging configured above
        access_log=False,  # EdgeMiddleware logs each request with its id
        server_header=False,
        # The client's address is decided by TRUSTED_PROXY_HOPS (gateway/client_address.py);
        # uvicorn's rewriting would believe any X-Forwarded-For sent from 127.0.0.1.
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        **options,
    )


if __name__ == "__main__":
    main()
