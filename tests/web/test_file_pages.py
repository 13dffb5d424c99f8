"""The web app's file list a page at a time, in Chromium: the newest 100 files first, 100
more from "Load more" or by scrolling to the end of the list (infinite scroll), until the
list ends; the search box asks the server (GET /api/v2/files?name=...), which searches every
file, not only those shown. The files are written straight into the database."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from tests.listing_rows import insert_files

from .conftest import sign_up

pytestmark = pytest.mark.e2e

COUNT = 250


def user_id_of(context) -> str:
    token = next(c["value"] for c in context.cookies() if c["name"] == "access_token")
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


def list_requests(page) -> list[dict]:
    """The query of every GET /api/v2/files the page sends, as it sends them."""
    seen: list[dict] = []

    def record(request) -> None:
        url = urlparse(request.url)
        if request.method == "GET" and url.path == "/api/v2/files":
            seen.append({key: values[0] for key, values in parse_qs(url.query).items()})

    page.on("request", record)
    return seen


def test_the_list_comes_a_page_at_a_time(page, context, web_url, db_engine):
    sign_up(page, web_url)
    names = [f"doc-{i:03d}.txt" for i in range(COUNT)]
    insert_files(db_engine, user_id_of(context), names)
    requests = list_requests(page)
    page.reload()
    rows = page.locator("li.file")
    expect(rows).to_have_count(100)
    expect(rows.first.locator(".file-name")).to_have_text("doc-249.txt")  # newest first
    expect(rows.nth(99).locator(".file-name")).to_have_text("doc-150.txt")
    more = page.get_by_role("button", name="Load more")
    expect(more).to_be_visible()
    assert requests and requests[0]["pageSize"] == "100" and "pageToken" not in requests[0]

    more.click()
    expect(rows).to_have_count(200)
    expect(rows.nth(199).locator(".file-name")).to_have_text("doc-050.txt")
    assert requests[-1]["pageToken"] and requests[-1]["pageSize"] == "100"

    more.scroll_into_view_if_needed()  # the end of the list in view: the rest comes by itself
    expect(rows).to_have_count(COUNT)
    expect(rows.last.locator(".file-name")).to_have_text("doc-000.txt")
    expect(more).to_be_hidden()
    shown = [name.strip() for name in page.locator("li.file .file-name").all_inner_texts()]
    assert shown == sorted(names, reverse=True)  # none twice, none skipped


def test_the_search_box_asks_the_server(page, context, web_url, db_engine):
    sign_up(page, web_url)
    names = [f"doc-{i:03d}.txt" for i in range(COUNT)] + ["100%.txt", "Quarterly REPORT.pdf"]
    insert_files(db_engine, user_id_of(context), names)
    requests = list_requests(page)
    page.reload()
    rows = page.locator("li.file")
    expect(rows).to_have_count(100)
    search = page.get_by_label("Search your files by name")

    # doc-001's match is beyond the first page shown: the server finds it.
    search.fill("DOC-00")
    expect(rows).to_have_count(10)
    expect(rows.first.locator(".file-name")).to_have_text("doc-009.txt")
    assert requests[-1]["name"] == "DOC-00"
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()

    search.fill("%")  # a plain character, not a wildcard
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".file-name")).to_have_text("100%.txt")

    search.fill("report")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".file-name")).to_have_text("Quarterly REPORT.pdf")

    search.fill("no such file")
    expect(rows).to_have_count(0)
    expect(page.get_by_text("No files match “no such file”.")).to_be_visible()
    expect(page.get_by_text("No files yet")).to_be_hidden()

    search.fill("")
    expect(rows).to_have_count(100)
    expect(page.get_by_role("button", name="Load more")).to_be_visible()
    assert "name" not in requests[-1]
