"""The gateway's FastAPI application: routes, error handling, CORS, request ids, and the
backend channels opened once for the life of the process."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.common.gc_tuning import freeze_startup_objects
from services.common.logs import REQUEST_ID_HEADER

from .deps import Backends
from .errors import install_error_handlers
from .metrics import install_metrics_route
from .middleware import EdgeMiddleware
from .routes import auth, events, files, health, v2, v2_uploads
from .settings import GatewaySettings
from .static import mount_web_app

DESCRIPTION = """Dropfile's REST API: v1 (`/api/auth`, `/api/files`) as existing browser and
script clients speak it, and v2 (`/api/v2`) beside it: files up to 5 TiB in parts the server
sizes, URLs presigned in batches, a checksum on every part, resume, and per-user quotas.
Sessions are cookies (`access_token`, `refresh_token`, `device_id`); errors carry `error`
(v1 file endpoints also `"success": false`). Invalid requests are answered 400; over
quota, 413."""


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # gRPC aio channels belong to the serving event loop, so they open here.
        app.state.backends = Backends(settings)
        freeze_startup_objects()  # the app is built: out of the collector's full passes
        try:
            yield
        finally:
            await app.state.backends.close()

    app = FastAPI(title="Dropfile API", version="1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(auth.router)
    app.include_router(files.router)
    app.include_router(v2.router)
    app.include_router(v2_uploads.router)
    app.include_router(events.router)
    app.include_router(health.router)
    mount_web_app(app)  # the browser app at `/`; it never answers for the API's paths
    _document_400_not_422(app)

    install_metrics_route(app, settings)  # /metrics in development
    # Request id, body limit, last-resort 500, metrics and access log: one layer.
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_request_body_bytes)
    # Added last, so outermost: CORS sees every response, errors too.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_credentials=True,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "X-Request-ID"],
        expose_headers=[REQUEST_ID_HEADER],
        max_age=600,
    )
    return app


def _document_400_not_422(app: FastAPI) -> None:
    """FastAPI documents invalid requests as 422; this gateway answers them 400."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
