"""The per-request call options carry the caller's access token, which must never reach a
log through their repr."""

from __future__ import annotations

from gateway.deps import UserCallOptions


def test_call_options_keep_the_access_token_out_of_their_repr():
    token = "eyJhbGciOiJSUzI1NiJ9.secret-payload.signature"
    options = UserCallOptions(
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=30.0,
        backends=None,
        access_token=token,
        request_id="rid-1",
    )
    assert "secret-payload" not in repr(options)
    assert "rid-1" in repr(options)
