"""The web app branches on the server's error codes: its lists (web/src/codes.ts) agree with
the gateway's catalog (gateway/errors.py)."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.errors import ERROR_CODES

CODES_TS = Path(__file__).resolve().parents[2] / "web" / "src" / "codes.ts"


def _set(name: str) -> set[str]:
    source = CODES_TS.read_text()
    body = re.search(
        rf"export const {name}: ReadonlySet<string> = new Set\(\[(.*?)\]\)", source, re.S
    )
    assert body, name
    return set(re.findall(r'"([A-Z0-9_]+)"', body.group(1)))


def test_the_web_app_knows_every_code_the_gateway_documents():
    transient, signed_out, permanent = (
        _set("TRANSIENT_CODES"),
        _set("SIGNED_OUT_CODES"),
        _set("PERMANENT_CODES"),
    )
    assert transient | signed_out | permanent == {entry.code for entry in ERROR_CODES}
    for entry in ERROR_CODES:
        assert (entry.code in transient) == entry.transient, entry.code
        assert (entry.code in signed_out) == (entry.status == 401), entry.code
        assert (entry.code in permanent) == (not entry.transient and entry.status != 401)
