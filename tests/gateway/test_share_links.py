"""Share links over HTTP: a user creates a link, and a client with no cookies at all
downloads the file through it, byte for byte (following the 302 to storage). Every way a
link can fail (a wrong password, expired, revoked, used up, its file deleted, unknown)
is the same 404 page, byte for byte; another user's file cannot be shared; guesses are
limited per address and per link's password (429 with Retry-After)."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text

from gateway.settings import GatewaySettings
from services.upload.server import create_server
from tests.fixtures.gateway import serve_gateway

from .conftest import upload_file, wait_until_uploaded


def an_address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@pytest.fixture(scope="module")
def share_gateway_url(gateway_settings) -> Iterator[str]:
    """A gateway behind one trusted proxy, so that each stranger of these tests comes from
    an address of its own (X-Forwarded-For) and their failures count for them alone."""
    settings = gateway_settings.model_copy(update={"trusted_proxy_hops": 1})
    with serve_gateway(settings) as url:
        yield url


@pytest.fixture
def stranger(share_gateway_url) -> Iterator[Callable[..., httpx.Client]]:
    """Makes clients with no cookies and no account, each from an address of its own."""
    clients: list[httpx.Client] = []

    def make(address: str | None = None) -> httpx.Client:
        client = httpx.Client(
            base_url=share_gateway_url,
            timeout=60,
            headers={"X-Forwarded-For": address or an_address()},
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def uploaded(owner: httpx.Client, data: bytes, name: str = "report.pdf") -> str:
    file_id, _ = upload_file(owner, data, name=name, file_type="application/pdf")
    wait_until_uploaded(owner, file_id)
    return file_id


def create_link(owner: httpx.Client, file_id: str, **body) -> dict:
    response = owner.post(f"/api/v2/files/{file_id}/links", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def path_of(link: dict) -> str:
    return urlsplit(link["url"]).path


def download(client: httpx.Client, response: httpx.Response) -> httpx.Response:
    """Follows the link's 302 to storage, as a browser would, with nothing of ours."""
    assert response.status_code == 302, response.text
    assert response.headers["cache-control"] == "no-store"
    got = httpx.get(response.headers["location"], timeout=60)
    assert got.status_code == 200, got.text
    return got


def test_a_stranger_downloads_through_a_link_and_every_refusal_is_the_same_page(
    signed_in, stranger, gateway_url, db_engine
):
    owner = signed_in()
    data = os.urandom(6 * 1024 * 1024 + 321)  # two parts
    file_id = uploaded(owner, data, name="Quarterly report.pdf")

    link = create_link(owner, file_id)
    assert set(link) == {"linkId", "url", "expiresAt", "maxDownloads", "passwordProtected"}
    assert link["url"].startswith(f"{gateway_url}/s/")  # the request's base URL in dev
    token = path_of(link).removeprefix("/s/")
    assert len(token) >= 43  # at least 128 random bits; these are 256
    assert link["maxDownloads"] is None and link["passwordProtected"] is False
    with db_engine.connect() as connection:
        stored = connection.execute(
            text("SELECT token_hash FROM share_links WHERE id = :id"), {"id": link["linkId"]}
        ).scalar()
    assert stored == hashlib.sha256(token.encode()).hexdigest()

    anyone = stranger()
    got = download(anyone, anyone.get(path_of(link)))
    assert got.content == data
    disposition = got.headers["content-disposition"]
    assert disposition.startswith("attachment") and "Quarterly report.pdf" in disposition
    assert not anyone.cookies

    listed = owner.get(f"/api/v2/files/{file_id}/links")
    assert listed.status_code == 200, listed.text
    (entry,) = listed.json()["links"]
    assert entry["linkId"] == link["linkId"] and entry["downloadCount"] == 1
    assert "url" not in entry and token not in listed.text

    refusals: dict[str, httpx.Response] = {}

    # A wrong password. Asking shows a form (no download counted); the right password
    # downloads; a wrong one is the common 404.
    protected = create_link(owner, file_id, password="open sesame", maxDownloads=5)
    assert protected["passwordProtected"] is True and protected["maxDownloads"] == 5
    form = anyone.get(path_of(protected))
    assert form.status_code == 200 and form.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in form.text and 'type="password"' in form.text
    assert "script" not in form.headers["content-security-policy"]
    refusals["wrong password"] = anyone.post(path_of(protected), data={"password": "open sesame?"})
    assert (
        download(anyone, anyone.post(path_of(protected), data={"password": "open sesame"})).content
        == data
    )

    # Expired: the link's time is up (moved into the past, as a day passing would).
    expired = create_link(owner, file_id, expiresInSeconds=60)
    with db_engine.begin() as connection:
        connection.execute(
            text("UPDATE share_links SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": expired["linkId"]},
        )
    refusals["expired"] = anyone.get(path_of(expired))

    # Revoked: 204, and refused at once.
    revoked = create_link(owner, file_id)
    assert owner.delete(f"/api/v2/links/{revoked['linkId']}").status_code == 204
    refusals["revoked"] = anyone.get(path_of(revoked))
    gone = owner.delete(f"/api/v2/links/{revoked['linkId']}")
    assert (gone.status_code, gone.json()["code"]) == (404, "LINK_NOT_FOUND")

    # Exhausted: one download, then no more.
    once = create_link(owner, file_id, maxDownloads=1)
    assert download(anyone, anyone.get(path_of(once))).content == data
    refusals["exhausted"] = anyone.get(path_of(once))

    # Unknown tokens, of a token's shape and of any other.
    refusals["unknown"] = anyone.get(f"/s/{secrets.token_urlsafe(32)}")
    refusals["malformed"] = anyone.get("/s/not%20a%20token")

    # A deleted file takes its links along.
    doomed_id = uploaded(owner, b"gone soon", name="draft.pdf")
    doomed = create_link(owner, doomed_id)
    deleted = owner.request("DELETE", "/api/files/delete", json={"file_id": doomed_id})
    assert deleted.status_code == 200, deleted.text
    refusals["file deleted"] = anyone.get(path_of(doomed))

    reference = refusals["unknown"]
    assert reference.status_code == 404
    assert reference.headers["content-type"].startswith("text/html")
    assert "This link is not available" in reference.text
    for why, response in refusals.items():
        assert response.status_code == 404, why
        assert response.content == reference.content, why
        assert (
            response.headers["content-security-policy"]
            == (reference.headers["content-security-policy"])
        )
    assert not anyone.cookies

    listed = owner.get(f"/api/v2/files/{file_id}/links").json()["links"]
    counts = {entry["linkId"]: entry["downloadCount"] for entry in listed}
    assert counts == {
        link["linkId"]: 1,
        protected["linkId"]: 1,
        expired["linkId"]: 0,
        once["linkId"]: 1,
    }


def test_another_users_file_cannot_be_shared_nor_its_links_seen(signed_in, stranger):
    owner, other = signed_in(), signed_in()
    file_id = uploaded(owner, b"owner's only")
    link = create_link(owner, file_id)

    for response in (
        other.post(f"/api/v2/files/{file_id}/links", json={}),
        other.get(f"/api/v2/files/{file_id}/links"),
        other.delete(f"/api/v2/links/{link['linkId']}"),
    ):
        assert response.status_code == 404, response.text
    unknown_file = other.post(f"/api/v2/files/{secrets.token_hex(4)}-x/links", json={})
    missing_file = other.post("/api/v2/files/00000000-0000-4000-8000-000000000000/links", json={})
    assert missing_file.status_code == 404
    # Another user's file reads exactly as a file that does not exist.
    assert other.post(f"/api/v2/files/{file_id}/links", json={}).json() == missing_file.json()
    assert unknown_file.status_code == 400  # not a UUID at all
    # The link still works: nothing another user did touched it.
    client = stranger()
    assert download(client, client.get(path_of(link))).content == b"owner's only"


def test_creating_links_checks_its_input(signed_in, api_client):
    owner = signed_in()
    file_id = uploaded(owner, b"x")
    for body in (
        {"expiresInSeconds": 59},
        {"expiresInSeconds": 31 * 86400},  # beyond the default maximum of 30 days
        {"expiresInSeconds": "3600"},
        {"maxDownloads": 0},
        {"password": "p" * 73},
        {"surprise": True},
    ):
        response = owner.post(f"/api/v2/files/{file_id}/links", json=body)
        assert response.status_code == 400, (body, response.text)
        assert "error" in response.json()
    made = create_link(owner, file_id, expiresInSeconds=3600, password="", maxDownloads=2)
    assert made["passwordProtected"] is False and made["maxDownloads"] == 2
    assert api_client().post(f"/api/v2/files/{file_id}/links", json={}).status_code == 401


def test_the_link_url_uses_public_base_url(gateway_settings, signed_in):
    owner = signed_in()
    file_id = uploaded(owner, b"public")
    settings = gateway_settings.model_copy(
        update={"public_base_url": "https://files.example.com/dropfile/"}
    )
    with serve_gateway(settings) as url:
        with httpx.Client(base_url=url, cookies=owner.cookies, timeout=60) as client:
            response = client.post(f"/api/v2/files/{file_id}/links", json={})
    assert response.status_code == 201, response.text
    assert response.json()["url"].startswith("https://files.example.com/dropfile/s/")


def test_share_routes_are_documented(gateway_url):
    document = httpx.get(f"{gateway_url}/openapi.json").json()
    operations = {
        operation["operationId"]: (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    for name, (method, path) in {
        "createShareLink": ("post", "/api/v2/files/{file_id}/links"),
        "listShareLinks": ("get", "/api/v2/files/{file_id}/links"),
        "revokeShareLink": ("delete", "/api/v2/links/{link_id}"),
        "openShareLink": ("get", "/s/{token}"),
        "unlockShareLink": ("post", "/s/{token}"),
    }.items():
        assert operations[name][:2] == (method, path)
    create = operations["createShareLink"][2]
    assert create["security"] == [{"accessTokenCookie": []}]
    assert {"201", "400", "401", "404", "409", "503"} <= set(create["responses"])
    body = document["components"]["schemas"]["CreateLinkBody"]["properties"]
    expiry = body["expiresInSeconds"]["anyOf"][0]
    assert (expiry["minimum"], expiry["maximum"]) == (60, 10 * 365 * 86400)
    assert body["maxDownloads"]["anyOf"][0]["maximum"] == 1_000_000
    assert {"302", "404", "429", "503"} <= set(operations["openShareLink"][2]["responses"])


# --- guessing -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_gateway_url(upload_settings, gateway_settings) -> Iterator[str]:
    """An upload service with tight guessing limits (3 failures per address; 2 password
    attempts per link and address, 3 per link), delays of a minute, and a gateway in
    front of it that answers refusals at once."""
    settings = upload_settings.model_copy(
        update={
            "share_guess_free_failures": 3,
            "share_password_free_failures": 2,
            "share_link_password_free_failures": 3,
            "share_guess_base_delay_seconds": 60.0,
        }
    )
    handle = create_server(settings, port=0)
    handle.start()
    front: GatewaySettings = gateway_settings.model_copy(
        update={
            "upload_service_addr": f"127.0.0.1:{handle.port}",
            "trusted_proxy_hops": 1,
            "throttled_answer_delay_seconds": 0.0,
        }
    )
    try:
        with serve_gateway(front) as url:
            yield url
    finally:
        handle.stop(0).wait()


def from_address(url: str, address: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, headers={"X-Forwarded-For": address})


def test_guessing_tokens_is_slowed_down_per_address(signed_in, strict_gateway_url):
    owner = signed_in()
    link = create_link(owner, uploaded(owner, b"guarded"))
    guesser_address = an_address()
    with from_address(strict_gateway_url, guesser_address) as guesser:
        for _ in range(3):
            assert guesser.get(f"/s/{secrets.token_urlsafe(32)}").status_code == 404
        refused = guesser.get(f"/s/{secrets.token_urlsafe(32)}")
        assert refused.status_code == 429
        assert 55 <= int(refused.headers["retry-after"]) <= 60
        assert "Too many attempts" in refused.text
        assert refused.headers["content-type"].startswith("text/html")
        # The address waits, even with a good link...
        assert guesser.get(path_of(link)).status_code == 429
    # ...which works from anywhere else.
    with from_address(strict_gateway_url, an_address()) as someone:
        assert someone.get(path_of(link)).status_code == 302


def test_guessing_a_links_password_is_slowed_down_per_address_and_per_link(
    signed_in, strict_gateway_url
):
    owner = signed_in()
    link = create_link(owner, uploaded(owner, b"guarded"), password="correct pony")
    path = path_of(link)
    with from_address(strict_gateway_url, an_address()) as first:
        for _ in range(2):
            assert first.post(path, data={"password": "wrong"}).status_code == 404
        # This address has spent its attempts at this link: even the right password waits.
        throttled = first.post(path, data={"password": "correct pony"})
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 55
    with from_address(strict_gateway_url, an_address()) as second:
        assert second.post(path, data={"password": "wrong"}).status_code == 404
    # Three attempts at the link from anywhere: the link's password waits for everyone.
    with from_address(strict_gateway_url, an_address()) as third:
        assert third.get(path).status_code == 200  # the form is still shown
        assert third.post(path, data={"password": "correct pony"}).status_code == 429
