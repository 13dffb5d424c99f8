"""9. Uploads from a browser: Dropfile's web app in Chromium beside the original browser
client's algorithm in the same Chromium, on loopback and in the WAN profile (the gateway
and the store behind bench/wan_proxy.py), with the CLI's MiB/s for the same file beside.

The original algorithm runs in a page of the bench's own, written into a document of the
gateway's origin (its /healthz answer, so the gateway is unchanged): the v1 flow of the original
React app with fetch, 5 MiB parts in batches of three, each part PUT and then recorded
(a record-chunk round trip) before the part counts as done, the next batch starting once
the whole batch is. Both are timed from picking the file to complete-upload's answer;
storage's confirmation is not waited for (the event rows measure it).

Each upload's CPU seconds per process go to the JSON's details: the stack's processes (the
store is `s3`) and Chromium's by kind (browser, renderer, network service, GPU process),
read before the page's context closes (a closed renderer's CPU can no longer be read)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from tools.chromium import CHROMIUM, CHROMIUM_ARGS

from .api import Account, api_client
from .config import BenchConfig
from .stack import BenchStack
from .stats import Results, Row
from .transfers import MIB, _delete, cpu_used, random_file, transfer

UPLOAD_TIMEOUT_MS = 900_000

# The original React client's upload, as a page: get-upload-urls, then batches of three
# parts, each PUT to storage and recorded before the batch is done, then complete-upload.
ORIGINAL_HTML = """<!doctype html>
<meta charset="utf-8"><title>original algorithm</title>
<input type="file" id="file">
<script>
const PART = 5 * 1024 * 1024;
const json = (body) => ({method: "POST", credentials: "same-origin",
                         headers: {"Content-Type": "application/json"},
                         body: JSON.stringify(body)});
async function ok(reply) {
  if (!reply.ok) throw new Error(`${reply.url}: HTTP ${reply.status} ${await reply.text()}`);
  return reply;
}
async function upload(file) {
  const fileId = crypto.randomUUID();
  const started = await (await ok(await fetch("/api/files/get-upload-urls", json({
    file_id: fileId, file_name: file.name, file_type: "application/octet-stream",
    file_size: String(file.size)})))).json();
  const urls = started.presignedUrls;
  const parts = [];
  for (let first = 0; first < urls.length; first += 3) {
    const batch = [];
    for (let i = first; i < Math.min(first + 3, urls.length); i++) {
      batch.push((async () => {
        const blob = file.slice(i * PART, (i + 1) * PART);
        const put = await ok(await fetch(urls[i], {method: "PUT", body: blob,
          headers: {"Content-Type": "application/octet-stream"}}));
        const etag = put.headers.get("ETag");
        await ok(await fetch("/api/files/record-chunk", json({file_id: fileId,
          chunk_index: i, size: String(blob.size), etag: etag.replaceAll('"', "")})));
        return {ETag: etag, PartNumber: i + 1};
      })());
    }
    parts.push(...await Promise.all(batch));
  }
  await ok(await fetch("/api/files/complete-upload",
                       json({uploadId: started.uploadId, fileId, parts})));
  return fileId;
}
document.getElementById("file").addEventListener("change", (event) => {
  window.benchResult = upload(event.target.files[0]).then(
    (fileId) => ({fileId}), (error) => ({error: String(error)}));
});
</script>
"""


def chromium_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) so far of the Chromium processes this process started
    through Playwright, by kind, and of Playwright's driver (its copy of the DevTools traffic)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, spent, kind = {}, {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        spent[pid] = (int(fields[11]) + int(fields[12])) / tick
        if "playwright/driver" in command:
            kind[pid] = "playwright-driver"
        elif "chromium" in command:
            if "--type=renderer" in command:
                kind[pid] = "chromium.renderer"
            elif "NetworkService" in command:
                kind[pid] = "chromium.network"
            elif "--type=gpu" in command:
                kind[pid] = "chromium.gpu"
            elif "--type=" in command:
                kind[pid] = "chromium.other"
            else:
                kind[pid] = "chromium.browser"
    used: dict[str, float] = {}
    me = os.getpid()
    for pid, name in kind.items():
        ancestor, hops = parent.get(pid, 0), 0
        while ancestor not in (me, 0, 1) and hops < 50:
            ancestor, hops = parent.get(ancestor, 0), hops + 1
        if ancestor == me:
            used[name] = used.get(name, 0.0) + spent[pid]
    return used


def _cpu_reading(stack: BenchStack) -> dict[str, float]:
    return {**stack.cpu_seconds(), **chromium_cpu_seconds()}


def _allow_origins(stack: BenchStack, origins: list[str]) -> None:
    """The store's CORS rule gains the bench's gateway origins (their ports are random)."""
    from services.setup import ensure_cors

    e = stack.endpoints
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=e.s3_endpoint,
        region_name=e.region,
        aws_access_key_id=e.s3_access_key,
        aws_secret_access_key=e.s3_secret_key,
    )
    ensure_cors(s3, e.s3_bucket, origins)


@contextmanager
def _chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def _signed_in_page(browser, gateway: str, account: Account) -> Iterator[object]:
    """A page of a fresh browser context holding the account's session cookie."""
    context = browser.new_context()
    try:
        context.add_cookies(
            [{"name": "access_token", "value": account.access_token, "url": gateway}]
        )
        yield context.new_page()
    finally:
        context.close()


def _web_app_upload(
    browser, gateway: str, account: Account, path: Path, reading: Callable[[], dict[str, float]]
) -> tuple[float, str, dict[str, float]]:
    """Seconds from picking the file in the web app to complete-upload's answer, the file's
    id and the CPU reading taken then."""
    with _signed_in_page(browser, gateway, account) as page:
        page.goto(gateway)
        page.wait_for_selector("#file-input", state="attached")

        def completed(response) -> bool:
            return response.request.method == "POST" and response.url.endswith("/complete")

        with page.expect_response(completed, timeout=UPLOAD_TIMEOUT_MS) as answer:
            started = time.perf_counter()
            page.set_input_files("#file-input", str(path))
        seconds = time.perf_counter() - started
        after = reading()
        response = answer.value
        if response.status != 200:
            raise RuntimeError(f"the web app's upload failed: HTTP {response.status}")
        file_id = response.url.rsplit("/", 2)[-2]
        return seconds, file_id, after


def _original_upload(
    browser, gateway: str, account: Account, path: Path, reading: Callable[[], dict[str, float]]
) -> tuple[float, str, dict[str, float]]:
    """Seconds from picking the file in the original algorithm's page to complete-upload,
    the file's id and the CPU reading taken then."""
    with _signed_in_page(browser, gateway, account) as page:
        failed: list[str] = []
        page.on(
            "requestfailed",
            lambda request: failed.append(f"{request.method} {request.url}: {request.failure}"),
        )
        # A real answer of the gateway's origin (no CSP on the API's paths), then the page
        # written into it: the page is of that origin, as the original app was of its own.
        page.goto(f"{gateway}/healthz")
        page.set_content(ORIGINAL_HTML)
        started = time.perf_counter()
        page.set_input_files("#file", str(path))
        page.wait_for_function("window.benchResult !== undefined", timeout=UPLOAD_TIMEOUT_MS)
        result = page.evaluate("window.benchResult")
        seconds = time.perf_counter() - started
        after = reading()
        if "error" in result:
            raise RuntimeError(
                f"the original algorithm's upload failed: {result['error']} {failed[:3]}"
            )
        return seconds, result["fileId"], after


def _page_cpu_used(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, Any]:
    """As transfers.cpu_used, for an upload of a page: Chromium's processes are the client."""
    used = {
        name: round(after[name] - before.get(name, 0.0), 2)
        for name in after
        if after[name] - before.get(name, 0.0) >= 0.01
    }
    return {"seconds": round(seconds, 3), "cpu_seconds": used}


def _cpu_summary(details: dict[str, Any]) -> str:
    """CPU seconds of one upload in words: the client (Chromium's processes or the CLI's),
    the store, and everything else of the stack."""
    used = details["cpu_seconds"]
    client = sum(v for k, v in used.items() if k.startswith("chromium.") or k == "client")
    store = used.get("s3", 0.0)
    driver = used.get("playwright-driver", 0.0)
    rest = sum(used.values()) - client - store - driver
    return (
        f"CPU-s: client {client:.1f}, store {store:.1f}, rest of the stack {rest:.1f}, "
        f"Playwright {driver:.1f}"
    )


def measure(
    stack: BenchStack,
    config: BenchConfig,
    account: Account,
    results: Results,
    say: Callable[[str], None],
) -> None:
    e = stack.endpoints
    size = config.browser_file_size
    profiles = (("loopback", e.gateway, e.s3_endpoint), ("WAN", e.gateway_wan, e.s3_endpoint_wan))
    methods = ("webapp", "original", "cli")
    labels = {
        "webapp": "Dropfile web app in Chromium",
        "original": "original browser algorithm in Chromium",
        "cli": "Dropfile CLI/SDK, same file",
    }
    rows = {
        (profile, method): results.add(
            Row(
                f"browser.{profile.lower()}.{method}",
                "Browser",
                f"{profile}: {labels[method]}",
                "MiB/s",
            )
        )
        for profile, _, _ in profiles
        for method in methods
    }
    if not CHROMIUM.is_file():
        for row in rows.values():
            row.unavailable = f"n/a (no {CHROMIUM})"
        say(f"  skipped: {CHROMIUM} is missing (apt-get install chromium)")
        return
    _allow_origins(stack, [e.gateway, e.gateway_wan])
    api = api_client(e.gateway, account)
    try:
        with random_file(size) as path, _chromium() as browser:
            for round_number in range(config.rounds):
                for profile, gateway, _ in profiles:
                    for method in methods:
                        stack.check_alive()
                        before = _cpu_reading(stack)
                        if method == "cli":
                            done = transfer(
                                {
                                    "method": "dropfile-upload",
                                    "gateway": gateway,
                                    "email": account.email,
                                    "password": account.password,
                                    "path": str(path),
                                    "bytes": size,
                                    "concurrency": config.concurrency,
                                    "defaults": True,
                                }
                            )
                            seconds, file_id = done["seconds"], done["file_id"]
                            details = cpu_used(before, _cpu_reading(stack), done)
                        else:
                            run = _web_app_upload if method == "webapp" else _original_upload
                            seconds, file_id, after = run(
                                browser, gateway, account, path, lambda: _cpu_reading(stack)
                            )
                            details = _page_cpu_used(before, after, seconds)
                        row = rows[(profile, method)]
                        row.samples.append(size / MIB / seconds)
                        row.details.append(details)
                        say(
                            f"  round {round_number + 1}: {profile} {method} "
                            f"{row.samples[-1]:.0f} MiB/s, {_cpu_summary(details)}"
                        )
                        _delete(api, stack, {"file_id": file_id})
    finally:
        api.close()
