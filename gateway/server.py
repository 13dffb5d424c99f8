"""The gateway process: `python -m gateway` serves HTTP with uvicorn (uvloop, httptools)."""
from __future__ import annotations

import uvicorn

from services.common.logs import configure_logging
from services.common.settings import load_settings

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.dropfile_http_host,
        port=settings.dropfile_http_port,
        loop="uvloop",
        http="httptools",
        workers=1,
        log_config=None,  # keep the JSON logging configured above
        access_log=False,  # RequestIdMiddleware logs each request with its id
        server_header=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
