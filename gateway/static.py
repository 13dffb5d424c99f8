"""The browser app (web/, built by `make web` into web/dist), served by the gateway at `/`
so that pages and API share one origin (the session cookies are SameSite=Strict).

A file of the build is served as it is; a GET path without a file extension is a page: the
build's own page of that folder where it has one (`/examples/uppy` is
examples/uppy/index.html, the Uppy example), else the app's, index.html. The API's own
paths (/api, the docs, the probes) are never served from here: the route declines them, so
their 404 and 405 answers stay the API's JSON errors. Without a build, `/` answers a JSON
404 saying how to make one; the API works either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import URLPath
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from .errors import ROUTE_NOT_FOUND, WEB_APP_NOT_BUILT, error_response

# Paths the app never answers for, whatever the build holds.
# (/s: share links, routes/share_pages.py.)
RESERVED_PATHS = (
    "/api",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
    "/s",
)
NOT_BUILT = "the web app is not built: run `make web` (the API is under /api, its docs at /docs)"
NOT_FOUND = "no such file"

# Vite names built assets by their content hash: a new build means new names.
_IMMUTABLE = "public, max-age=31536000, immutable"
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",  # always revalidated, so a deploy shows at once
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Scripts and styles come from this origin only; uploads go to storage's origin,
    # which this process does not know, hence connect-src allows any http(s) origin.
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' https: http:; "
        # blob: for the previews Uppy's Dashboard makes of picked images (/examples/uppy).
        "img-src 'self' data: blob:; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
}


def default_web_dist() -> Path:
    """web/dist of the checkout the gateway runs from; in an installed package (the
    container image), web/dist under the working directory."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "web").is_dir():
        return checkout / "web" / "dist"
    return Path.cwd() / "web" / "dist"


def _is_reserved(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in RESERVED_PATHS)


class WebAppRoute(BaseRoute):
    """Matches GET and HEAD requests outside the API's paths (registered after every API
    route, so the API always wins)."""

    def __init__(self, dist_dir: Path) -> None:
        self.dist_dir = dist_dir.resolve()

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and not _is_reserved(scope["path"])
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)  # an unnamed route: url_for never means it

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._response_for(scope["path"])
        await response(scope, receive, send)

    def _response_for(self, path: str) -> Response:
        index = self.dist_dir / "index.html"
        if not index.is_file():
            return error_response(path, 404, NOT_BUILT, code=WEB_APP_NOT_BUILT)
        relative = path.lstrip("/")
        if relative and "." in relative.rsplit("/", 1)[-1]:
            return self._file(path, relative)
        page = self._own_page(relative)
        return FileResponse(page or index, media_type="text/html", headers=_PAGE_HEADERS)

    def _own_page(self, relative: str) -> Path | None:
        """The build's index.html of the folder `relative` names, when it has one."""
        if not relative.strip("/"):
            return None
        candidate = (self.dist_dir / relative / "index.html").resolve()
        if candidate.is_relative_to(self.dist_dir) and candidate.is_file():
            return candidate
        return None

    def _file(self, path: str, relative: str) -> Response:
        candidate = (self.dist_dir / relative).resolve()
        # resolve() folds "..": whatever is outside the build is not there.
        if not candidate.is_relative_to(self.dist_dir) or not candidate.is_file():
            return error_response(path, 404, NOT_FOUND, code=ROUTE_NOT_FOUND)
        if candidate.name == "index.html":
            return FileResponse(candidate, media_type="text/html", headers=_PAGE_HEADERS)
        cache = _IMMUTABLE if relative.startswith("assets/") else "no-cache"
        return FileResponse(
            candidate, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
        )


def mount_web_app(app: FastAPI, dist_dir: Path | None = None) -> None:
    """Serves the built app at `/`; call after every API route is included."""
    app.router.routes.append(WebAppRoute(dist_dir or default_web_dist()))
