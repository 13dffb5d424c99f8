"""Which address the gateway tells auth a request comes from: the connection's, or the
X-Forwarded-For entry the trusted proxies wrote, never one the client wrote itself."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.client_address import client_address


def request_from(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request(
        {"type": "http", "method": "POST", "path": "/", "headers": headers, "client": (peer, 50000)}
    )


@pytest.mark.parametrize(
    "hops,forwarded,expected",
    [
        (0, ("203.0.113.9",), "10.0.0.5"),  # no proxy: the header is anyone's
        (1, ("203.0.113.9",), "203.0.113.9"),
        (1, ("1.2.3.4, 203.0.113.9",), "203.0.113.9"),  # the client's own entries come first
        (2, ("1.2.3.4, 203.0.113.9, 10.1.1.1",), "203.0.113.9"),
        (2, ("1.2.3.4, 203.0.113.9", "10.1.1.1"), "203.0.113.9"),  # several headers: in order
        (2, ("203.0.113.9",), "10.0.0.5"),  # fewer entries than proxies: not through them all
        (1, (), "10.0.0.5"),
        (1, ("not-an-address",), "10.0.0.5"),
        (1, ("2001:db8::1",), "2001:db8::1"),
    ],
)
def test_the_client_is_the_entry_the_trusted_proxies_wrote(hops, forwarded, expected):
    assert client_address(request_from("10.0.0.5", *forwarded), hops) == expected
