"""Sharing, the quota and search in the web app, in headless Chromium against the real
stack: the quota bar counts what is uploaded, the search box narrows the list, the share
dialog makes a link (expiry, password, download limit) and copies it; a stranger's
browser, with no account and no cookies, opens the link, gets the password page, is
refused with a wrong password and downloads the file with the right one; the owner sees
the download counted and revokes the link, which the stranger then finds gone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect

from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, file_row, save_artifact, sign_up

pytestmark = pytest.mark.e2e


@pytest.fixture
def stranger(browser_driver, tmp_path) -> Iterator[BrowserContext]:
    """Another browser, with a profile of its own: no account, no cookies."""
    context = browser_driver.chromium.launch_persistent_context(
        str(tmp_path / "stranger-profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        accept_downloads=True,
    )
    yield context
    context.close()


def test_quota_search_share_dialog_stranger_download_and_revoke(
    page: Page, context: BrowserContext, stranger: BrowserContext, web_url: str, tmp_path: Path
):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_url)
    sign_up(page, web_url)
    quota = page.locator("#quota")
    expect(quota).to_be_visible()
    expect(page.locator("#quota-text")).to_have_text("0 bytes of 100 GiB used")

    report = tmp_path / "Alpha report.txt"
    report.write_bytes(os.urandom(3072))
    photo = tmp_path / "beta photo.bin"
    photo.write_bytes(os.urandom(2048))
    page.set_input_files("#file-input", [report, photo])
    expect(file_row(page, report.name)).to_have_attribute("data-status", "UPLOADED")
    expect(file_row(page, photo.name)).to_have_attribute("data-status", "UPLOADED")
    expect(page.locator("#quota-text")).to_have_text("5.0 KiB of 100 GiB used")

    # Search: any case, every word; nothing matching says so.
    search = page.get_by_label("Search your files by name")
    search.fill("ALPHA")
    expect(page.locator("li.file")).to_have_count(1)
    expect(file_row(page, report.name)).to_be_visible()
    search.fill("zebra")
    expect(page.locator("li.file")).to_have_count(0)
    expect(page.locator("#files-no-match")).to_have_text("No files match “zebra”.")
    search.fill("")
    expect(page.locator("li.file")).to_have_count(2)

    # The share dialog: 1 day, a password, at most 2 downloads.
    file_row(page, report.name).get_by_role("button", name=f"Share {report.name}").click()
    dialog = page.get_by_role("dialog", name="Share a file")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#share-file")).to_have_text(report.name)
    expect(dialog.get_by_text("No links yet.")).to_be_visible()
    dialog.get_by_label("Link expires after").select_option(label="1 day")
    dialog.get_by_label("Password").fill("pony express")
    dialog.get_by_label("Maximum downloads").fill("2")
    dialog.get_by_role("button", name="Create link").click()
    url_field = dialog.locator("#share-url")
    expect(url_field).not_to_have_value("")
    url = url_field.input_value()
    assert url.startswith(f"{web_url}/s/") and len(url) > len(web_url) + 40
    dialog.get_by_role("button", name="Copy link").click()
    expect(dialog.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == url
    links = dialog.locator("li.share-link")
    expect(links).to_have_count(1)
    expect(links.first).to_contain_text("0 of 2 downloads · password")
    expect(links.first.locator(".badge")).to_have_text("Active")
    save_artifact(page, "share-dialog.png")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # A stranger opens the link: a page asking for the password, without any script.
    visitor = stranger.pages[0] if stranger.pages else stranger.new_page()
    violations: list[str] = []

    def note_violation(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    visitor.on("console", note_violation)
    visitor.goto(url)
    expect(visitor.get_by_role("heading", name="A file was shared with you")).to_be_visible()
    save_artifact(visitor, "share-password-page.png")
    visitor.get_by_label("Password").fill("pony expresso")
    visitor.get_by_role("button", name="Download").click()
    expect(visitor.get_by_role("heading", name="This link is not available")).to_be_visible()
    expect(visitor.get_by_text("the password was wrong")).to_be_visible()
    save_artifact(visitor, "share-not-available.png")
    visitor.get_by_role("link", name="try again").click()
    expect(visitor.get_by_role("heading", name="A file was shared with you")).to_be_visible()
    visitor.get_by_label("Password").fill("pony express")
    with visitor.expect_download() as started:
        visitor.get_by_role("button", name="Download").click()
    download = started.value
    assert download.suggested_filename == report.name
    saved = tmp_path / "from the link"
    download.save_as(saved)
    assert saved.read_bytes() == report.read_bytes()
    assert not stranger.cookies()
    assert not violations, violations

    # The owner sees the download counted, and revokes the link.
    file_row(page, report.name).get_by_role("button", name=f"Share {report.name}").click()
    expect(links).to_have_count(1)
    expect(links.first).to_contain_text("1 of 2 downloads")
    links.first.get_by_role("button", name="Revoke").click()
    expect(dialog.get_by_text("No links yet.")).to_be_visible()
    expect(links).to_have_count(0)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    visitor.goto(url)
    expect(visitor.get_by_role("heading", name="This link is not available")).to_be_visible()
