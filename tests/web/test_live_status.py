"""The web app's live status in headless Chromium: status changes arrive through the event
stream (GET /api/v2/events), and the list's polling still confirms uploads when the stream
is unavailable."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, Request, Route, expect

from tests.web.conftest import file_row, sign_up

pytestmark = pytest.mark.e2e

EVENTS = "/api/v2/events"


def test_the_status_turns_uploaded_through_the_event_stream(page: Page, web_url, tmp_path):
    """Every list the page reads says UPLOADING (as if polling never caught up), so only
    the event stream can tell the page the upload was confirmed."""
    streams: list[str] = []
    page.on(
        "request",
        lambda request: streams.append(request.url) if request.url.endswith(EVENTS) else None,
    )
    sign_up(page, web_url)  # the stream opens with the file list
    stale_lists: list[int] = []

    def always_uploading(route: Route, request: Request) -> None:
        if request.method != "GET":  # POST /api/v2/files starts an upload
            route.continue_()
            return
        response = route.fetch()
        body = response.json()
        for file in body["files"]:
            file["status"] = "UPLOADING"
        stale_lists.append(len(body["files"]))
        route.fulfill(response=response, json=body)

    # The page lists a page at a time (GET /api/v2/files?pageSize=...).
    page.route(lambda url: urlparse(url).path == "/api/v2/files", always_uploading)
    notes = tmp_path / "live notes.txt"
    notes.write_text("the status comes by itself\n")

    page.set_input_files("#file-input", [notes])

    row = file_row(page, notes.name)
    expect(row).to_have_attribute("data-status", "UPLOADED")
    expect(row.locator(".badge")).to_have_text("Uploaded")
    expect(row.get_by_role("button", name=f"Download {notes.name}")).to_be_visible()
    assert streams, "the page never opened the event stream"
    assert any(stale_lists), "the page never listed the file"
    page.unroute_all(behavior="ignoreErrors")  # a handler may be mid-request


def test_polling_confirms_uploads_when_the_event_stream_is_down(page: Page, web_url, tmp_path):
    refused: list[str] = []

    def unavailable(route: Route, request: Request) -> None:
        refused.append(request.url)
        route.fulfill(
            status=503,
            json={"error": "a backend service is unavailable"},
            headers={"Retry-After": "1"},
        )

    page.route(f"**{EVENTS}", unavailable)
    sign_up(page, web_url)
    notes = tmp_path / "polled.txt"
    notes.write_text("no stream today\n")

    page.set_input_files("#file-input", [notes])

    expect(file_row(page, notes.name)).to_have_attribute("data-status", "UPLOADED")
    assert refused, "the page never tried the event stream"
    page.unroute_all(behavior="ignoreErrors")  # a handler may be mid-request
