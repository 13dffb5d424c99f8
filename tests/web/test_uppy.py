"""The Uppy example (/examples/uppy) in headless Chromium against the real stack: the real

pytestmark = pytest.mark.e2e
@uppy/core, @uppy/dashboard and @uppy/aws-s3 (web/package-lock.json) upload into Dropfile
through web/uppy/dropfile-uppy.ts (the gateway serves it at /uppy/dropfile-uppy.js): files
dropped on the Dashboard, paused midway and resumed through list parts, all UPLOADED and
byte-exact; a cancelled upload leaves nothing in storage."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from playwright.sync_api import Page, Request, Route, expect

from tests.web.conftest import part_number, sign_up

MiB = 1024 * 1024


def wait_in_page(page: Page, predicate, *, what: str, timeout: float = 60) -> None:
    """Waits until `predicate()` holds, letting Playwright deliver the page's events (which
    it does only while the test is inside one of its calls)."""
    for _ in range(int(timeout * 10)):
        if predicate():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {what}")


def open_example(page: Page, web_url: str) -> list[str]:
    """Opens the Uppy example (signed in); returns the page's CSP complaints, as they come."""
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(f"{web_url}/examples/uppy")
    expect(page.locator("#session")).to_have_attribute("data-signed-in", "true")
    expect(page.locator(".uppy-Dashboard")).to_be_visible()
    return refused


def drop_on_the_dashboard(page: Page, paths: list[Path]) -> None:
    """Drops files on the Dashboard as a user drags them from their desktop: a drop event
    whose DataTransfer holds them (read from disk through a file input of the test's own)."""
    page.evaluate("""() => {
        const input = Object.assign(document.createElement("input"),
                                    {type: "file", multiple: true, id: "test-files"});
        input.hidden = true;
        document.body.append(input);
    }""")
    page.set_input_files("#test-files", paths)
    data = page.evaluate_handle("""() => {
        const data = new DataTransfer();
        for (const file of document.querySelector("#test-files").files) data.items.add(file);
        return data;
    }""")
    page.dispatch_event(".uppy-Dashboard", "dragover", {"dataTransfer": data})
    page.dispatch_event(".uppy-Dashboard", "drop", {"dataTransfer": data})
    page.evaluate("document.querySelector('#test-files').remove()")


def files_by_name(page: Page, web_url: str) -> dict[str, dict]:
    response = page.request.get(f"{web_url}/api/files/list")
    assert response.ok, response.text()
    return {file["fileName"]: file for file in response.json()["files"]}


def downloaded(page: Page, web_url: str, s3_key: str) -> bytes:
    response = page.request.post(f"{web_url}/api/files/get-download-url", data={"s3_key": s3_key})
    assert response.ok, response.text()
    return httpx.get(response.json()["url"], timeout=60).content


def multipart_upload_ids(s3, bucket: str) -> set[str]:
    listing = s3.list_multipart_uploads(Bucket=bucket)
    return {upload["UploadId"] for upload in listing.get("Uploads", [])}


def test_files_dropped_on_the_dashboard_upload_pause_resume_and_arrive_whole(
    page, web_url, storage, events_server, tmp_path
):
    sign_up(page, web_url)
    refused = open_example(page, web_url)

    big = tmp_path / "holiday video.bin"
    big.write_bytes(os.urandom(30 * MiB))  # six parts of 5 MiB
    medium = tmp_path / "scan.pdf"
    medium.write_bytes(os.urandom(7 * MiB + 123))  # two parts, the last one short
    small = tmp_path / "notes.txt"
    small.write_text("remember the milk\n")
    files = [big, medium, small]

    # Storage holds the big file's parts 4 to 6 (only it has so many) until the upload is
    # paused: the pause comes midway, with parts 1 to 3 stored and recorded.
    holding = [True]
    held: list[Route] = []

    def hold_the_last_parts(route: Route, request: Request) -> None:
        if holding[0] and request.method == "PUT" and (part_number(request.url) or 0) >= 4:
            held.append(route)
            return
        route.continue_()

    page.route(f"{storage['endpoint']}/**", hold_the_last_parts)
    records: list[Request] = []
    puts: list[Request] = []  # parts sent to storage

    def watch(request: Request) -> None:
        if request.url.endswith("/parts/batch"):
            records.append(request)
        elif request.method == "PUT" and part_number(request.url):
            puts.append(request)

    page.on("request", watch)
    created: dict[str, str] = {}  # file name -> Dropfile file id
    page.on(
        "response",
        lambda response: (
            created.update({response.request.post_data_json["fileName"]: response.json()["fileId"]})
            if response.url.endswith("/api/v2/files") and response.request.method == "POST"
            else None
        ),
    )

    drop_on_the_dashboard(page, files)
    expect(page.locator(".uppy-Dashboard-Item")).to_have_count(3)
    page.get_by_role("button", name="Upload 3 files").click()

    def recorded(name: str) -> set[int]:
        return {
            part["partNumber"]
            for request in records
            if name in created and f"/{created[name]}/" in request.url
            for part in request.post_data_json["parts"]
        }

    wait_in_page(
        page,
        lambda: recorded(big.name) >= {1, 2, 3} and len(held) == 3,
        what="parts 1-3 of the big file stored and recorded, 4-6 held",
    )
    assert set(created) == {file.name for file in files}  # each one started in Dropfile

    pause = page.get_by_role("button", name="Pause", exact=True)
    pause.click()
    resume = page.get_by_role("button", name="Resume", exact=True)
    expect(resume).to_be_visible()
    expect(page.locator(".uppy-StatusBar")).to_contain_text("Paused")
    holding[0] = False

    resumed_at = len(puts)
    with page.expect_response(f"**/api/v2/files/{created[big.name]}/upload") as listed:
        resume.click()  # Uppy asks which parts storage holds (listParts), sends the rest
    stored = [part["partNumber"] for part in listed.value.json()["storedParts"]]
    assert {1, 2, 3} <= set(stored)
    expect(page.locator(".uppy-StatusBar")).to_contain_text("Complete", timeout=60_000)
    sent = [  # the big file's parts sent after the resume: none twice
        part_number(request.url)
        for request in puts[resumed_at:]
        if f"/{created[big.name]}?" in request.url
    ]
    assert sorted(sent) == sorted(set(range(1, 7)) - set(stored))
    # Every part went with its checksum, signed into its URL (storage refuses other bytes).
    for request in puts:
        assert request.headers["x-amz-checksum-sha256"], request.url
        assert "x-amz-checksum-sha256" in request.url.split("X-Amz-SignedHeaders=")[1]
    assert recorded(big.name) == set(range(1, 7))
    page.unroute_all(behavior="ignoreErrors")  # the held routes' requests were aborted

    expect(page.locator("#uploaded li")).to_have_count(3)
    assert {
        item.get_attribute("data-file-id") for item in page.locator("#uploaded li").all()
    } == set(created.values())

    def all_uploaded() -> bool:
        listed = files_by_name(page, web_url)
        return all(listed.get(file.name, {}).get("status") == "UPLOADED" for file in files)

    wait_in_page(page, all_uploaded, what="storage to confirm every file")
    listed_files = files_by_name(page, web_url)
    for file in files:
        entry = listed_files[file.name]
        assert entry["fileId"] == created[file.name]
        assert entry["size"] == file.stat().st_size
        assert downloaded(page, web_url, entry["s3Key"]) == file.read_bytes(), file.name
    assert refused == []


def test_a_cancelled_upload_leaves_nothing_in_storage(page, web_url, storage, s3, tmp_path):
    sign_up(page, web_url)
    refused = open_example(page, web_url)
    held: list[Route] = []

    def hold_all_but_the_first_part(route: Route, request: Request) -> None:
        if request.method == "PUT" and (part_number(request.url) or 0) > 1:
            held.append(route)  # never answered: the upload stays midway
            return
        route.continue_()

    page.route(f"{storage['endpoint']}/**", hold_all_but_the_first_part)
    disk = tmp_path / "disk image.iso"
    disk.write_bytes(os.urandom(12 * MiB))
    page.set_input_files(".uppy-Dashboard-input", disk)  # picked with "browse files"
    with (
        page.expect_response("**/api/v2/files") as started,
        page.expect_response("**/api/v2/files/*/parts/batch") as recorded,
    ):
        page.get_by_role("button", name="Upload 1 file").click()
    assert recorded.value.ok
    file_id = started.value.json()["fileId"]
    upload_id = started.value.json()["uploadId"]
    bucket = storage["bucket"]
    assert upload_id in multipart_upload_ids(s3, bucket)
    s3_key = files_by_name(page, web_url)[disk.name]["s3Key"]
    wait_in_page(page, lambda: len(held) == 2, what="parts 2 and 3 held")

    with (
        page.expect_response("**/api/files/abort-upload") as aborted,
        page.expect_response("**/api/files/delete") as deleted,
    ):
        page.locator(".uppy-StatusBar").get_by_role("button", name="Cancel").click()
    assert aborted.value.ok and aborted.value.request.post_data_json == {
        "uploadId": upload_id,
        "file_id": file_id,
    }
    assert deleted.value.ok
    expect(page.locator(".uppy-Dashboard-Item")).to_have_count(0)
    page.unroute_all(behavior="ignoreErrors")

    assert disk.name not in files_by_name(page, web_url)
    assert upload_id not in multipart_upload_ids(s3, bucket)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=s3_key)["KeyCount"] == 0
    assert refused == []
