"""The gateway's FastAPI application: routes, error handling, CORS, request ids, and the
backend channels opened once for the life of the process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from services.common import keys
from services.common.gc_tuning import freeze_startup_objects
from services.common.logs import REQUEST_ID_HEADER

from .deps import Backends
from .errors import install_error_handlers
from .metrics import install_metrics_route
from .middleware import EdgeMiddleware
from .openapi import adjust_openapi
from .routes import (
    auth,
    events,
    files,
    health,
    share_pages,
    shares,
    sso,
    v2,
    v2_listing,
    v2_uploads,
)
from .settings import GatewaySettings
from .static import mount_web_app

ROUTERS = (
    files.router,
    v2_uploads.router,
    v2.router,
    v2_listing.router,
    shares.router,
    events.router,
    auth.router,
    sso.router,
    health.router,
    share_pages.router,
)

DESCRIPTION = """Dropfile's REST API: v1 (`/api/auth`, `/api/files`) as existing browser and
script clients speak it, and v2 (`/api/v2`) beside it: files up to 5 TiB in parts the server
sizes, URLs presigned in batches, a checksum on every part, resume, per-user quotas, and
single sign-on with OpenID Connect (`/api/v2/auth/oidc/login`, where browsers go).
Share links (`/api/v2/files/{id}/links`) let anyone download one file at `/s/<token>`
without an account, until they expire, are revoked or run out of downloads.
Sessions are cookies (`access_token`, `refresh_token`, `device_id`); errors carry `error`
for people and `code` for programs (v1 file endpoints also `"success": false`): the
README's "Error codes" lists every code. Invalid requests are answered 400; over quota,
413."""


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # gRPC aio channels belong to the serving event loop, so they open here.
        app.state.backends = Backends(settings, service_token=app.state.service_token)
        freeze_startup_objects()  # the app is built: out of the collector's full passes
        try:
            yield
        finally:
            await app.state.backends.close()

    app = FastAPI(title="Dropfile API", version="1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    # Sent to auth with each client's address (deps.client_call).
    app.state.service_token = keys.service_token(settings, settings.service_token)
    install_error_handlers(app)
    # FastAPI tries the routers in this order, each one's routes in turn: the routes that
    # record parts come first (trying the auth routes first cost ~6 % of a record-chunk).
    for router in ROUTERS:
        app.include_router(router)
    # What a 405 names in Allow (errors.py): every method of a path, whichever route has it.
    app.state.route_methods = [
        (route.path_regex, route.methods)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    mount_web_app(app)  # the browser app at `/`; it never answers for the API's paths
    adjust_openapi(app, ROUTERS, settings)

    install_metrics_route(app, settings)  # /metrics in development
    # Request id, body limits, last-resort 500, metrics and access log: one layer.
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        body_timeout=settings.http_body_timeout_seconds,
    )
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
