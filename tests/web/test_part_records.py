"""The web app records stored parts in batches (POST .../parts/batch), not one request per
part; a resumed upload records, with their checksums, the parts storage holds whose
checksum the server does not know (stored but never recorded, in a store whose part
listing leaves checksums out, as SeaweedFS's does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import APIResponse, Request, Route, expect

from tests.web.conftest import file_row, part_number, sign_up

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def record_requests(page) -> list[Request]:
    """Every record request the page sends from now on (single or batch)."""
    sent: list[Request] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request) if request.method == "POST" and "/parts" in request.url else None
        ),
    )
    return sent


def test_parts_stored_together_are_recorded_in_one_request(
    page, web_url, storage, events_server, tmp_path
):
    sign_up(page, web_url)
    held: list[tuple[Route, APIResponse]] = []

    def answer_the_puts_together(route: Route, request: Request) -> None:
        if request.method != "PUT" or not part_number(request.url):
            route.continue_()
            return
        held.append((route, route.fetch()))  # stored now; the page hears of it below
        if len(held) == 3:  # every part stored: the page learns it of all three at once
            for waiting, stored in held:
                waiting.fulfill(response=stored)

    page.route(f"{storage['endpoint']}/**", answer_the_puts_together)
    records = record_requests(page)
    data = tmp_path / "three parts.bin"
    data.write_bytes(os.urandom(12 * MiB + 17))
    page.set_input_files("#file-input", data)

    expect(file_row(page, data.name)).to_have_attribute("data-status", "UPLOADED")
    assert [request.url.endswith("/parts/batch") for request in records] == [True]
    parts = records[0].post_data_json["parts"]
    assert sorted(part["partNumber"] for part in parts) == [1, 2, 3]
    assert all(part["checksum"] and part["etag"] and '"' not in part["etag"] for part in parts)


def test_a_resumed_part_whose_checksum_the_server_lacks_is_recorded_with_it(
    page, web_url, storage, events_server, tmp_path
):
    sign_up(page, web_url)
    failing = [True]
    refused: list[int] = []

    def fail_part_two(route: Route, request: Request) -> None:
        if failing[0] and request.method == "PUT" and part_number(request.url) == 2:
            refused.append(2)
            route.abort("connectionfailed")
            return
        route.continue_()

    held_records: list[Route] = []
    page.route(f"{storage['endpoint']}/**", fail_part_two)
    page.route("**/parts/batch", lambda route, request: held_records.append(route))
    asked: dict[int, str] = {}
    page.on(
        "request",
        lambda request: (
            asked.update(
                {request.post_data_json["first_part"]: request.post_data_json["checksums"][0]}
            )
            if request.url.endswith("/part-urls")
            else None
        ),
    )
    data = tmp_path / "two parts.bin"
    data.write_bytes(os.urandom(6 * MiB))
    page.set_input_files("#file-input", data)
    while not held_records or not refused:
        page.wait_for_timeout(100)  # part 1 stored, its record never arriving; part 2 failing

    page.once("dialog", lambda dialog: dialog.accept())  # "leave the page?" on reload
    page.reload()
    failing[0] = False
    page.unroute("**/parts/batch")
    expect(page.get_by_role("heading", name="Your files")).to_be_visible()

    def as_seaweedfs_lists_it(route: Route, request: Request) -> None:
        state = route.fetch().json()
        for part in state["storedParts"]:
            part["checksum"] = None
        route.fulfill(json=state)

    page.route("**/api/v2/files/*/upload", as_seaweedfs_lists_it)
    records = record_requests(page)
    page.set_input_files("#file-input", data)  # the same file, picked again

    expect(file_row(page, data.name)).to_have_attribute("data-status", "UPLOADED")
    recorded = {
        part["partNumber"]: part for request in records for part in request.post_data_json["parts"]
    }
    assert sorted(recorded) == [1, 2]
    assert recorded[1]["checksum"] == asked[1]  # what storage was told when it was stored
    assert recorded[2]["checksum"] == asked[2]
    with page.expect_download() as downloading:
        file_row(page, data.name).get_by_role("button", name=f"Download {data.name}").click()
    assert Path(downloading.value.path()).read_bytes() == data.read_bytes()
