"""The address of the client a request comes from, for auth's per-address limits.

Without proxies it is the TCP peer. Behind N trusted proxies, each appending the address it
was reached from to X-Forwarded-For, it is the Nth entry from the end: the entries before
it were written by the client and prove nothing. Uvicorn's own proxy-header rewriting is
off (gateway/server.py), so the peer seen here is the connection's."""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

FORWARDED_FOR = "x-forwarded-for"


def _valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def client_address(request: Request, trusted_hops: int) -> str:
    peer = request.client.host if request.client else ""
    if trusted_hops <= 0:
        return peer
    hops = [
        entry.strip()
        for header in request.headers.getlist(FORWARDED_FOR)
        for entry in header.split(",")
        if entry.strip()
    ]
    if len(hops) < trusted_hops:
        # Fewer entries than proxies: the request did not come through all of them.
        return peer
    return _valid(hops[-trusted_hops]) or peer
