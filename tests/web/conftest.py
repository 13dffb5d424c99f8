"""Real-browser tests of the web app: Debian's Chromium, driven by Python Playwright,
against the whole test stack, with the app built by `make web` and served by the gateway.

Chromium is never downloaded by Playwright: /usr/bin/chromium must exist (`.ci/run`
installs it), and the tests fail, not skip, without it."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from services.setup import ensure_cors
from tests.conftest import ROOT
from tools.chromium import CHROMIUM, CHROMIUM_ARGS

ARTIFACTS = Path(ROOT) / "test-artifacts"
PASSWORD = "correct horse battery"

# Expectations wait for the real stack (an upload, storage's event): generous, not timed.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def web_build() -> Path:
    """The built app, rebuilt by `make web` when its sources changed."""
    result = subprocess.run(
        ["make", "--no-print-directory", "web"], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"`make web` failed:\n{result.stdout}\n{result.stderr}")
    index = Path(ROOT) / "web" / "dist" / "index.html"
    assert index.is_file(), "make web did not produce web/dist/index.html"
    return index.parent


@pytest.fixture(scope="session")
def web_url(web_build, gateway_url, s3, storage) -> str:
    """The gateway's origin, serving the app. The bucket's CORS rule (made by the setup
    command) gains this origin, so that its pages may PUT parts and read their ETags: the
    gateway's port is chosen at random, so the default origins cannot include it."""
    rule = s3.get_bucket_cors(Bucket=storage["bucket"])["CORSRules"][0]
    ensure_cors(s3, storage["bucket"], rule["AllowedOrigins"] + [gateway_url])
    return gateway_url


@pytest.fixture(scope="session")
def browser_driver() -> Iterator[Playwright]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium "
            "(apt-get install -y chromium); .ci/run does this"
        )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def context(browser_driver, tmp_path) -> Iterator[BrowserContext]:
    """A fresh browser profile (its own user data dir, so its own cookies) per test."""
    context = browser_driver.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        accept_downloads=True,
        viewport={"width": 1100, "height": 560},
    )
    yield context
    context.close()


@pytest.fixture
def page(context) -> Iterator[Page]:
    page = context.pages[0] if context.pages else context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert not errors, f"uncaught errors in the page: {errors}"


@dataclass
class Account:
    email: str
    name: str
    password: str = PASSWORD


def sign_up(page: Page, web_url: str) -> Account:
    """Creates an account through the page; returns on the files view."""
    account = Account(email=f"web-{uuid.uuid4().hex[:10]}@example.com", name="Grace")
    page.goto(web_url)
    page.get_by_role("button", name="Create an account").click()
    form = page.locator("#sign-up-form")
    form.get_by_label("Name").fill(account.name)
    form.get_by_label("Email").fill(account.email)
    form.get_by_label("Password", exact=True).fill(account.password)
    form.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Your files")).to_be_visible()
    return account


def sign_in(page: Page, email: str, password: str) -> None:
    form = page.locator("#sign-in-form")
    form.get_by_label("Email").fill(email)
    form.get_by_label("Password", exact=True).fill(password)
    form.get_by_role("button", name="Sign in").click()


def file_row(page: Page, name: str):
    return page.locator("li.file").filter(has=page.locator(".file-name", has_text=name))


def save_artifact(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def part_number(url: str) -> int | None:
    """The part a presigned part URL is for (None for other storage requests)."""
    values = parse_qs(urlparse(url).query).get("partNumber")
    return int(values[0]) if values else None
