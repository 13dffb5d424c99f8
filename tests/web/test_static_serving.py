"""How the gateway serves the built app (gateway/static.py): pages and assets at `/`, the
API's paths never shadowed, nothing outside web/dist, and a clear answer when there is no
build."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlparse

import httpx
from fastapi import FastAPI

from gateway.errors import install_error_handlers
from gateway.static import mount_web_app
from tests.fixtures.gateway import serve_gateway


def raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    """A GET sent exactly as written (httpx would fold the dots of `..` away)."""
    url = urlparse(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_app_and_its_assets_are_served_at_the_root(web_url, web_build):
    with httpx.Client(base_url=web_url) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        script = re.search(r'src="(/assets/[^"]+\.js)"', page.text).group(1)
        asset = client.get(script)
        assert asset.status_code == 200
        assert asset.content == (web_build / script.lstrip("/")).read_bytes()
        assert "immutable" in asset.headers["cache-control"]
        # Any other page path is the app too (it decides what to show)...
        assert client.get("/some/page").text == page.text
        # ...but a missing file is a 404, not a page passed off as a script.
        missing = client.get("/assets/missing.js")
        assert missing.status_code == 404
        assert missing.json() == {"error": "no such file", "code": "ROUTE_NOT_FOUND"}


def test_the_uppy_example_and_module_are_served(web_url, web_build):
    with httpx.Client(base_url=web_url) as client:
        app = client.get("/").text
        example = (web_build / "examples" / "uppy" / "index.html").read_text()
        for path in ("/examples/uppy", "/examples/uppy/"):
            page = client.get(path)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert page.text == example != app  # the folder's own page, not the app
            assert (
                page.headers["content-security-policy"]
                == client.get("/").headers["content-security-policy"]
            )
        module = client.get("/uppy/dropfile-uppy.js")
        assert module.status_code == 200
        assert module.headers["content-type"].startswith("text/javascript")
        assert module.headers["cache-control"] == "no-cache"  # a stable name: revalidated
        assert "dropfileUppy" in module.text
        assert client.get("/examples").text == app  # a folder without a page of its own


def test_the_api_paths_are_never_shadowed(web_url):
    with httpx.Client(base_url=web_url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/openapi.json").json()["info"]["title"] == "Dropfile API"
        assert "swagger" in client.get("/docs").text.lower()
        unknown = client.get("/api/nope")
        assert unknown.status_code == 404 and unknown.json() == {
            "error": "no such endpoint",
            "code": "ROUTE_NOT_FOUND",
        }
        wrong_method = client.get("/api/auth/signup")
        assert wrong_method.status_code == 405
        assert client.get("/api/files/list").status_code == 401
        assert client.post("/elsewhere").status_code == 404


def test_nothing_outside_the_build_is_served(web_url):
    for path in (
        "/assets/../../package.json",
        "/../../pyproject.toml",
        "/%2e%2e/%2e%2e/pyproject.toml",
        "/assets/%2e%2e/%2e%2e/package.json",
    ):
        status, body = raw_get(web_url, path)
        assert status == 404, (path, status, body[:200])
        assert b'"devDependencies"' not in body and b"[project]" not in body
    # A folder's own page is looked for inside the build only: web/index.html, the app's
    # source page, is outside it, so this is the built app's page.
    status, body = raw_get(web_url, "/../../web")
    assert status == 200 and body == httpx.get(f"{web_url}/").content


def test_without_a_build_the_gateway_answers_how_to_make_one(gateway_settings, tmp_path):
    app = FastAPI()
    install_error_handlers(app)
    mount_web_app(app, tmp_path / "no-build")
    with serve_gateway(gateway_settings, app=app) as url:
        response = httpx.get(f"{url}/")
        assert response.status_code == 404
        assert "make web" in response.json()["error"]
