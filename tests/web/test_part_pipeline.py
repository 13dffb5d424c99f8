"""The web app makes parts ready ahead of their PUTs (web/src/part-pipeline.ts): while parts
are on the wire it hashes the next ones and asks for their URLs in runs, one part-urls
request for several parts, instead of one round trip per part just before its PUT."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Request, Route, expect

from tests.web.conftest import file_row, part_number, sign_up

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
PARTS = 12


def test_urls_are_asked_for_in_runs_while_parts_are_on_the_wire(
    page, web_url, storage, events_server, tmp_path
):
    sign_up(page, web_url)
    asked: list[tuple[int, int, int]] = []
    page.on(
        "request",
        lambda request: (
            asked.append(
                (
                    request.post_data_json["first_part"],
                    request.post_data_json["last_part"],
                    len(request.post_data_json["checksums"]),
                )
            )
            if request.url.endswith("/part-urls")
            else None
        ),
    )
    # The first PUTs are held until the page has asked for every URL: the senders are busy,
    # so the parts behind them can only be made ready ahead, in runs.
    held: list[Route] = []
    holding = [True]

    def hold_puts(route: Route, request: Request) -> None:
        if holding[0] and request.method == "PUT" and part_number(request.url):
            held.append(route)
        else:
            route.continue_()

    page.route(f"{storage['endpoint']}/**", hold_puts)
    data = tmp_path / "twelve parts.bin"
    data.write_bytes(os.urandom((PARTS - 1) * 5 * MiB + 17))
    page.set_input_files("#file-input", data)
    while not any(last == PARTS for _, last, _ in asked):
        page.wait_for_timeout(50)
    holding[0] = False
    for route in held:
        route.continue_()

    expect(file_row(page, data.name)).to_have_attribute("data-status", "UPLOADED")
    covered = sorted(n for first, last, _ in asked for n in range(first, last + 1))
    assert covered == list(range(1, PARTS + 1)), asked
    assert all(count == last - first + 1 for first, last, count in asked)
    assert len(asked) < PARTS and max(last - first for first, last, _ in asked) >= 1, asked
