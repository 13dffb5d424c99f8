"""The web app in headless Chromium against the real stack: sign up, upload files through
the page (parts PUT straight to moto's S3, storage's event confirming them through SQS and
the event processor), watch the status turn UPLOADED without reloading, download and
compare bytes, delete; cancel an upload midway; sign out, sign in, refresh the session."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, Route, expect

from tests.web.conftest import file_row, part_number, save_artifact, sign_in, sign_up

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


@contextmanager
def delayed_storage_events(sqs, queue_url: str, seconds: int):
    """Storage's notifications reach the event processor `seconds` late in the block, so
    the page shows an upload sent but not yet confirmed."""
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"DelaySeconds": str(seconds)})
    try:
        yield
    finally:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"DelaySeconds": "0"})


def listed_files(page: Page, web_url: str) -> list[dict]:
    """GET /api/files/list with the page's cookies."""
    response = page.request.get(f"{web_url}/api/files/list")
    assert response.ok, response.text()
    return response.json()["files"]


def test_upload_several_files_then_download_and_delete(
    page, web_url, storage, s3, sqs, events_server, tmp_path
):
    sign_up(page, web_url)
    expect(page.get_by_text("No files yet")).to_be_visible()

    # Storage fails part 2's first PUT (503) and refuses part 3's first as expired (403):
    # the page must retry both, asking for a fresh URL.
    failed_once: list[int] = []

    def flaky_storage(route: Route, request: Request) -> None:
        part = part_number(request.url)
        if request.method == "PUT" and part in (2, 3) and part not in failed_once:
            failed_once.append(part)
            route.fulfill(
                status=503 if part == 2 else 403,
                body="<Error/>",
                headers={"Access-Control-Allow-Origin": web_url, "Content-Type": "application/xml"},
            )
            return
        route.continue_()

    page.route(f"{storage['endpoint']}/**", flaky_storage)
    renewals: list[dict] = []
    page.on(
        "request",
        lambda request: (
            renewals.append(request.post_data_json) if "/part-urls" in request.url else None
        ),
    )

    video = tmp_path / "holiday video.bin"
    video.write_bytes(os.urandom(12 * MiB + 54_321))  # three parts, the last one short
    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk\n")
    with delayed_storage_events(sqs, storage["queue_url"], seconds=3):
        page.set_input_files("#file-input", [video, notes])
        video_row = file_row(page, video.name)
        # Sent and completed, but storage has not confirmed it yet: the page says so...
        expect(video_row.locator(".badge")).to_have_text("Confirming…")
        # ...and polls until the status turns UPLOADED, without a reload.
        expect(video_row).to_have_attribute("data-status", "UPLOADED")
    expect(video_row.locator(".badge")).to_have_text("Uploaded")
    expect(file_row(page, notes.name)).to_have_attribute("data-status", "UPLOADED")
    expect(video_row.locator(".file-meta")).to_contain_text("12.1 MiB")
    assert sorted(failed_once) == [2, 3]
    # Each part's URL is asked for when it is about to go, signed for its checksum; part 3's
    # was asked for again after storage refused it (403).
    asked = [(body["first_part"], body["last_part"]) for body in renewals]
    assert asked.count((3, 3)) == 2 and asked.count((1, 1)) >= 1
    assert all(len(body["checksums"]) == 1 for body in renewals)
    page.unroute_all(behavior="ignoreErrors")  # a handler may be mid-request

    save_artifact(page, "web-file-list.png")  # docs/screenshot-web.png is a copy of one

    with page.expect_download() as downloading:
        video_row.get_by_role("button", name=f"Download {video.name}").click()
    download = downloading.value
    assert download.suggested_filename == video.name
    assert Path(download.path()).read_bytes() == video.read_bytes()

    s3_key = next(f["s3Key"] for f in listed_files(page, web_url) if f["fileName"] == video.name)
    assert s3.list_objects_v2(Bucket=storage["bucket"], Prefix=s3_key)["KeyCount"] == 1
    questions: list[str] = []

    def answer(dialog, accept: bool) -> None:
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    delete_button = video_row.get_by_role("button", name=f"Delete {video.name}")
    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    delete_button.click()
    expect(video_row).to_have_count(1)  # "Cancel" in the confirmation keeps the file
    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    delete_button.click()
    expect(video_row).to_have_count(0)
    assert all(video.name in question for question in questions) and len(questions) == 2
    assert [f["fileName"] for f in listed_files(page, web_url)] == [notes.name]
    assert s3.list_objects_v2(Bucket=storage["bucket"], Prefix=s3_key)["KeyCount"] == 0
    expect(page.get_by_role("alert")).to_be_hidden()  # nothing went wrong on the way


def test_cancelling_an_upload_midway_leaves_nothing_behind(page, web_url, storage, s3):
    sign_up(page, web_url)
    held: list[Route] = []

    def hold_all_but_the_first_part(route: Route, request: Request) -> None:
        if request.method == "PUT" and (part_number(request.url) or 0) > 1:
            held.append(route)  # never answered: the upload stays midway
            return
        route.continue_()

    page.route(f"{storage['endpoint']}/**", hold_all_but_the_first_part)
    name = "disk image.iso"
    # Dropped onto the page, as a user drags files from their desktop.
    data_transfer = page.evaluate_handle(
        """([name, size]) => {
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(size)], name, {type: "application/octet-stream"}));
        return data;
    }""",
        [name, 20 * MiB],
    )
    with (
        page.expect_response("**/api/v2/files") as started,
        page.expect_response("**/api/v2/files/*/parts/batch") as recorded,
    ):
        page.dispatch_event("#drop-zone", "dragover", {"dataTransfer": data_transfer})
        page.dispatch_event("#drop-zone", "drop", {"dataTransfer": data_transfer})
    assert recorded.value.ok
    file_id = json.loads(started.value.request.post_data)["fileId"]
    upload_id = started.value.json()["uploadId"]

    def multipart_upload_ids() -> set[str]:
        listing = s3.list_multipart_uploads(Bucket=storage["bucket"])
        return {upload["UploadId"] for upload in listing.get("Uploads", [])}

    assert upload_id in multipart_upload_ids()
    row = file_row(page, name)
    expect(row.get_by_role("progressbar")).to_be_visible()
    expect(row.locator(".progress-text")).to_contain_text("of 20.0 MiB")
    assert held, "the later parts were never sent"

    with page.expect_request("**/api/files/abort-upload") as aborting:
        row.get_by_role("button", name=f"Cancel the upload of {name}").click()
    assert aborting.value.post_data_json == {"uploadId": upload_id, "file_id": file_id}
    expect(row).to_have_count(0)
    expect(page.locator("#announcer")).to_have_text(f"The upload of {name} was cancelled.")
    assert file_id not in {f["fileId"] for f in listed_files(page, web_url)}
    assert upload_id not in multipart_upload_ids()
    expect(page.get_by_role("alert")).to_be_hidden()


def test_upload_progress_is_drawn_a_few_times_a_second_not_every_frame(page, web_url, tmp_path):
    """Progress events arrive dozens of times a second; drawing each frame cost Chromium
    CPU the upload needs (bench/README.md, Browser), so the bytes sent are drawn at most
    four times a second (a little slack for timers firing late)."""
    sign_up(page, web_url)
    page.evaluate(
        """() => {
        window.progressDraws = [];
        new MutationObserver((records) => {
          if (records.some((r) => r.target.classList?.contains("progress-text")))
            window.progressDraws.push(performance.now());
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }"""
    )
    big = tmp_path / "progress.bin"
    big.write_bytes(os.urandom(30 * MiB))
    with page.expect_response("**/api/v2/files/*/complete", timeout=120_000) as completed:
        page.set_input_files("#file-input", str(big))
    assert completed.value.ok
    draws: list[float] = page.evaluate("window.progressDraws")
    assert len(draws) >= 2, f"the progress was drawn {len(draws)} times"
    busiest = max(sum(1 for t in draws if start <= t < start + 1000) for start in draws)
    assert busiest <= 6, f"{busiest} progress draws within one second: {draws}"


def test_an_upload_storage_refuses_fails_in_words_and_is_aborted(
    page, web_url, storage, s3, tmp_path
):
    sign_up(page, web_url)

    def refuse_parts(route: Route, request: Request) -> None:
        if request.method != "PUT":
            route.continue_()
            return
        route.fulfill(
            status=400,
            body="<Error><Code>InvalidRequest</Code></Error>",
            headers={"Access-Control-Allow-Origin": web_url},
        )

    page.route(f"{storage['endpoint']}/**", refuse_parts)
    broken = tmp_path / "broken.bin"
    broken.write_bytes(os.urandom(MiB))
    with (
        page.expect_response("**/api/v2/files") as started,
        page.expect_request("**/api/files/abort-upload"),
    ):
        page.set_input_files("#file-input", broken)
    upload_id = started.value.json()["uploadId"]
    expect(page.get_by_role("alert")).to_contain_text(
        "The upload of broken.bin failed: storage refused the part (HTTP 400)"
    )
    row = file_row(page, broken.name)
    expect(row).to_have_attribute("data-status", "FAILED")
    expect(row.locator(".file-message")).to_contain_text("HTTP 400")
    listing = s3.list_multipart_uploads(Bucket=storage["bucket"])
    assert upload_id not in {upload["UploadId"] for upload in listing.get("Uploads", [])}

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=f"Delete {broken.name}").click()
    expect(row).to_have_count(0)
    assert broken.name not in {f["fileName"] for f in listed_files(page, web_url)}


def test_sign_out_sign_in_and_a_refreshed_session(page, context, web_url):
    account = sign_up(page, web_url)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert not {c["name"] for c in context.cookies()} & {"access_token", "refresh_token"}

    # The gateway's refusal, in its own words; nothing says whether the email exists.
    sign_in(page, account.email, "not the password")
    expect(page.get_by_role("alert")).to_contain_text("invalid email or password")
    sign_in(page, account.email, account.password)
    expect(page.get_by_role("heading", name="Your files")).to_be_visible()
    expect(page.get_by_role("alert")).to_be_hidden()

    # Without an access token (as when it expires), the page refreshes the session once
    # and carries on; the cookies stay out of the page's reach (HttpOnly).
    assert all(
        c["httpOnly"]
        for c in context.cookies()
        if c["name"] in ("access_token", "refresh_token", "device_id")
    )
    context.clear_cookies(name="access_token")
    with page.expect_response("**/api/auth/refresh") as refreshed:
        page.reload()
    assert refreshed.value.ok
    expect(page.get_by_role("heading", name="Your files")).to_be_visible()
    assert "access_token" in {c["name"] for c in context.cookies()}

    # With the session gone for good, the page asks to sign in again.
    context.clear_cookies()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_sign_up_errors_are_shown_in_words(page, web_url):
    account = sign_up(page, web_url)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Create an account").click()
    form = page.locator("#sign-up-form")
    form.get_by_label("Name").fill("Someone Else")
    form.get_by_label("Email").fill(account.email)
    form.get_by_label("Password", exact=True).fill("another password")
    form.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("an account with this email already exists")
    # The browser's own checks, before anything is sent.
    form.get_by_label("Password", exact=True).fill("short")
    form.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("Password")
