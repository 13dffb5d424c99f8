"""The SDK branches on the server's error codes: its lists (dropfile_client/codes.py) agree
with the gateway's catalog (gateway/errors.py), and an answer without a code is judged by
its HTTP status."""

from __future__ import annotations

from dropfile_client import ApiError
from dropfile_client.codes import (
    KNOWN_CODES,
    PERMANENT_CODES,
    SIGNED_OUT_CODES,
    TRANSIENT_CODES,
    code_of,
    is_signed_out,
    is_transient,
)
from gateway.errors import ERROR_CODES


def test_the_sdk_knows_every_code_the_gateway_documents():
    assert KNOWN_CODES == {entry.code for entry in ERROR_CODES}
    assert not (TRANSIENT_CODES & SIGNED_OUT_CODES or TRANSIENT_CODES & PERMANENT_CODES)
    assert not SIGNED_OUT_CODES & PERMANENT_CODES
    for entry in ERROR_CODES:
        assert (entry.code in TRANSIENT_CODES) == entry.transient, entry.code
        assert (entry.code in SIGNED_OUT_CODES) == (entry.status == 401), entry.code


def test_codes_decide_not_statuses():
    # A 503 whose code says the same request will not succeed is not retried...
    assert not ApiError(503, "x", code="INVALID_ARGUMENT").transient
    # ...and a 409 with a transient code would be.
    assert ApiError(409, "x", code="BACKEND_UNAVAILABLE").transient
    assert ApiError(429, "busy", code="TOO_MANY_UPLOADS").transient
    assert not ApiError(413, "full", code="QUOTA_EXCEEDED").transient
    assert is_signed_out("ACCESS_TOKEN_INVALID", 401)
    assert not is_signed_out("NOT_FOUND", 401)


def test_answers_without_a_known_code_are_judged_by_status():
    assert code_of(502, "<html>bad gateway</html>") == "HTTP_502"
    assert code_of(404, {"error": "gone"}) == "HTTP_404"
    assert code_of(409, {"error": "x", "code": "PART_NOT_RECORDED"}) == "PART_NOT_RECORDED"
    assert ApiError(502, "proxy").code == "HTTP_502" and ApiError(502, "proxy").transient
    assert is_transient("SOME_NEWER_CODE", 503) and not is_transient("SOME_NEWER_CODE", 409)
    assert is_signed_out("HTTP_401", 401)
