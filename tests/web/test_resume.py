"""The web app resumes an upload after a page reload when the user picks the same file again:
the parts storage already holds are not sent again, and the file arrives whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Request, Response, Route, expect

from tests.web.conftest import file_row, part_number, sign_up

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def recorded_parts(records: list[Response]) -> list[int]:
    """The part numbers the page's record requests (in batches) have recorded so far."""
    return sorted(number for response in records for number in response.json()["partNumbers"])


def test_an_upload_interrupted_by_a_reload_resumes_when_the_file_is_picked_again(
    page, web_url, storage, events_server, tmp_path
):
    sign_up(page, web_url)
    refused: list[int] = []
    failing = [True]

    def fail_the_last_part(route: Route, request: Request) -> None:
        if failing[0] and request.method == "PUT" and part_number(request.url) == 3:
            refused.append(3)  # the connection fails (the page retries, in vain, until reloaded)
            route.abort("connectionfailed")
            return
        route.continue_()

    page.route(f"{storage['endpoint']}/**", fail_the_last_part)
    records: list[Response] = []
    page.on(
        "response",
        lambda response: (
            records.append(response)
            if response.url.endswith("/parts/batch") and response.ok
            else None
        ),
    )
    video = tmp_path / "long video.bin"
    video.write_bytes(os.urandom(12 * MiB + 4_321))  # three parts
    page.set_input_files("#file-input", video)
    while not {1, 2} <= set(recorded_parts(records)) or not refused:
        page.wait_for_timeout(100)  # parts 1 and 2 stored and recorded, part 3 failing

    page.once("dialog", lambda dialog: dialog.accept())  # "leave the page?" on reload
    page.reload()
    failing[0] = False
    expect(page.get_by_role("heading", name="Your files")).to_be_visible()
    row = file_row(page, video.name)
    expect(row).to_have_attribute("data-status", "UPLOADING")  # the server's view of it

    sent: list[int] = []
    page.on(
        "request",
        lambda request: (
            sent.append(part_number(request.url))
            if request.method == "PUT" and part_number(request.url)
            else None
        ),
    )
    with page.expect_response("**/api/v2/files/*/upload") as resumed:
        page.set_input_files("#file-input", video)  # the same file, picked again
    assert [part["partNumber"] for part in resumed.value.json()["storedParts"]] == [1, 2]
    expect(row).to_have_attribute("data-status", "UPLOADED")
    assert sent == [3]  # only the part storage did not hold
    expect(row).to_have_count(1)

    with page.expect_download() as downloading:
        row.get_by_role("button", name=f"Download {video.name}").click()
    assert Path(downloading.value.path()).read_bytes() == video.read_bytes()
    assert (
        page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('dropfile.upload:'))")
        == []
    )  # nothing left to resume
    expect(page.get_by_role("alert")).to_be_hidden()
