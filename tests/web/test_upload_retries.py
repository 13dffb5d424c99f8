"""The web app never throws away an upload because the server had a bad moment: every call
of an upload (create, part URLs, part PUTs, records, complete) is retried through 500s,
503s with Retry-After, dropped connections and answers lost after the server acted, and
the upload completes with no abort. Failures that outlast the retries keep the upload:
picking the same file again resumes it.

The faults are made in the browser (route interception: the page is the client under
test); the server behind them is the real stack."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Request, Route, expect

from tests.web.conftest import file_row, part_number, sign_up

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
CREATE = re.compile(r"/api/v2/files$")
PART_URLS = re.compile(r"/api/v2/files/[^/]+/part-urls$")
RECORD = re.compile(r"/api/v2/files/[^/]+/parts/batch$")
COMPLETE = re.compile(r"/api/v2/files/[^/]+/complete$")
ABORT = "/api/files/abort-upload"


class Faults:
    """Per kind of call, the faults its next requests meet, in order: an HTTP status (with
    Retry-After after a colon: "503:2"), "drop" (no answer at all) or "lose-answer" (the
    server acts; the page never hears of it). Requests are logged with when they came."""

    def __init__(self, web_url: str, plan: dict[str, list[str]]) -> None:
        self.web_url = web_url
        self.plan = {kind: list(faults) for kind, faults in plan.items()}
        self.seen: dict[str, list[float]] = {kind: [] for kind in plan}

    def left(self) -> int:
        return sum(len(faults) for faults in self.plan.values())

    def handle(self, kind: str, route: Route) -> None:
        self.seen.setdefault(kind, []).append(time.monotonic())
        faults = self.plan.get(kind)
        if not faults:
            route.continue_()
            return
        fault = faults.pop(0)
        if fault == "drop":
            route.abort("connectionreset")
        elif fault == "lose-answer":
            route.fetch()  # the server acts on it...
            route.abort("connectionreset")  # ...and its answer is lost on the way
        else:
            status, _, retry_after = fault.partition(":")
            headers = {
                "Access-Control-Allow-Origin": self.web_url,
                "Access-Control-Expose-Headers": "ETag, Retry-After",
            }
            if retry_after:
                headers["Retry-After"] = retry_after
            route.fulfill(
                status=int(status),
                headers=headers,
                json={"error": "the server is having a bad moment"},
            )


def intercept(page, storage, faults: Faults) -> list[Request]:
    """Routes every call of an upload through `faults`; returns the abort requests sent."""

    def gateway(route: Route, request: Request) -> None:
        path = request.url.split("?")[0]
        for kind, pattern in (
            ("create", CREATE),
            ("part-urls", PART_URLS),
            ("record", RECORD),
            ("complete", COMPLETE),
        ):
            if request.method == "POST" and pattern.search(path):
                faults.handle(kind, route)
                return
        route.continue_()

    def storage_put(route: Route, request: Request) -> None:
        if request.method == "PUT" and part_number(request.url) == 2:
            faults.handle("part-put", route)
            return
        route.continue_()

    page.route("**/api/v2/files**", gateway)
    page.route(f"{storage['endpoint']}/**", storage_put)
    aborts: list[Request] = []
    page.on(
        "request", lambda request: aborts.append(request) if request.url.endswith(ABORT) else None
    )
    return aborts


def downloaded(page, name: str) -> bytes:
    with page.expect_download() as downloading:
        file_row(page, name).get_by_role("button", name=f"Download {name}").click()
    return Path(downloading.value.path()).read_bytes()


def test_every_call_of_an_upload_is_retried_through_a_servers_bad_moment(
    page, web_url, storage, events_server, tmp_path
):
    sign_up(page, web_url)
    faults = Faults(
        web_url,
        {
            "create": ["500", "lose-answer"],  # created, answer lost: the retry finds it (409)
            "part-urls": ["503", "500", "drop"],
            "part-put": ["503", "drop"],
            "record": ["500", "503", "drop"],
            "complete": ["503:2", "lose-answer"],  # completed, answer lost: the retry succeeds
        },
    )
    aborts = intercept(page, storage, faults)
    data = tmp_path / "through the storm.bin"
    data.write_bytes(os.urandom(12 * MiB + 99))  # three parts
    page.set_input_files("#file-input", data)

    row = file_row(page, data.name)
    expect(row).to_have_attribute("data-status", "UPLOADED")
    assert faults.left() == 0, faults.plan
    assert aborts == []
    # Retry-After: 2 was honoured (the jittered backoff alone waits at most half a second).
    completes = faults.seen["complete"]
    assert completes[1] - completes[0] >= 1.8, completes
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(page.locator("li.file")).to_have_count(1)  # one upload, not two
    assert downloaded(page, data.name) == data.read_bytes()


def test_an_upload_failing_beyond_the_retries_is_kept_and_resumes_when_picked_again(
    page, web_url, storage, events_server, tmp_path
):
    page.clock.install()  # time flows; the test jumps past the retry deadline
    sign_up(page, web_url)
    failing = [True]
    sent_parts: list[int] = []

    def records_down(route: Route, request: Request) -> None:
        if failing[0] and request.method == "POST":
            route.fulfill(status=503, json={"error": "a backend service is unavailable"})
            return
        route.continue_()

    page.route("**/api/v2/files/*/parts/batch", records_down)
    page.on(
        "request",
        lambda request: (
            sent_parts.append(part_number(request.url))
            if request.method == "PUT" and part_number(request.url)
            else None
        ),
    )
    aborts: list[Request] = []
    page.on(
        "request", lambda request: aborts.append(request) if request.url.endswith(ABORT) else None
    )
    tries: list[Request] = []
    page.on(
        "request",
        lambda request: tries.append(request) if request.url.endswith("/parts/batch") else None,
    )
    data = tmp_path / "kept.bin"
    data.write_bytes(os.urandom(8 * MiB + 5))  # two parts
    page.set_input_files("#file-input", data)
    while len(tries) < 2:
        page.wait_for_timeout(100)  # being retried...
    page.clock.fast_forward("03:00")  # ...for longer than the retries last

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("a backend service is unavailable")
    expect(alert).to_contain_text("The upload was kept: pick the same file again to resume it")
    assert aborts == []
    assert sorted(sent_parts) == [1, 2]  # both stored, neither recorded

    failing[0] = False
    del sent_parts[:]
    with page.expect_response("**/api/v2/files/*/upload") as resumed:
        page.set_input_files("#file-input", data)  # the same file, picked again
    assert sorted(p["partNumber"] for p in resumed.value.json()["storedParts"]) == [1, 2]
    row = file_row(page, data.name)
    expect(row).to_have_attribute("data-status", "UPLOADED")
    assert sent_parts == []  # nothing sent twice
    assert aborts == []
    expect(page.locator("li.file")).to_have_count(1)
    assert downloaded(page, data.name) == data.read_bytes()


def test_an_upload_the_server_says_is_gone_ends_without_an_abort(
    page, web_url, storage, events_server, tmp_path
):
    sign_up(page, web_url)
    held: list[Route] = []

    def hold_the_first(route: Route, request: Request) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/v2/files/*/parts/batch", hold_the_first)
    aborts: list[Request] = []
    page.on(
        "request", lambda request: aborts.append(request) if request.url.endswith(ABORT) else None
    )
    data = tmp_path / "deleted meanwhile.bin"
    data.write_bytes(os.urandom(6 * MiB + 1))  # two parts
    with page.expect_request("**/api/v2/files") as started:
        page.set_input_files("#file-input", data)
    file_id = started.value.post_data_json["fileId"]
    while not held:
        page.wait_for_timeout(100)  # a record on its way

    # Deleted elsewhere meanwhile (the same account, another tab): the record is refused 404.
    deleted = page.request.delete(f"{web_url}/api/files/delete", data={"file_id": file_id})
    assert deleted.ok, deleted.text()
    with page.expect_response("**/api/v2/files/*/parts/batch") as refused:
        held[0].continue_()
    assert refused.value.status == 404

    expect(page.get_by_role("alert")).to_contain_text(f"The upload of {data.name} failed: part")
    expect(page.get_by_role("alert")).to_contain_text("file not found")
    assert aborts == []  # nothing to abort: the server says it is gone
    assert (
        page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('dropfile.upload:'))")
        == []
    )  # picking the file again starts afresh
    with page.expect_request("**/api/v2/files") as again:
        page.set_input_files("#file-input", data)
    new_id = again.value.post_data_json["fileId"]
    assert new_id != file_id
    row = page.locator(f'li.file[data-file-id="{new_id}"]')
    expect(row).to_have_attribute("data-status", "UPLOADED")
    with page.expect_download() as downloading:
        row.get_by_role("button", name=f"Download {data.name}").click()
    assert Path(downloading.value.path()).read_bytes() == data.read_bytes()
