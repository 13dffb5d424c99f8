"""Listing over HTTP. `GET /api/v2/files` pages (pageSize, pageToken, name; nextPageToken),
refuses bad input with 400 and `error`, and shows nobody else's files. v1's
`GET /api/files/list` still answers every file in one reply, byte for byte what the route
answered when it built the whole list through its response model, now from the
coordinator's pages of 1,000 and streamed; a page that fails mid-list cuts the reply off
(the client's HTTP library sees an incomplete body), never a shorter list that parses."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from dropfile.upload.v1 import upload_pb2
from gateway.routes.files import _file_entry
from gateway.schemas import FileListReply
from gateway.settings import GatewaySettings
from services.upload.server import create_server
from tests.conftest import settings_for
from tests.fixtures.gateway import serve_gateway
from tests.listing_rows import insert_files

NAMES = [
    'quote " and \\ backslash',
    "ümlaut Größe.txt",
    "emoji 😀.png",
    "tab\there",
    "line\u2028separator",
    "<script>&amp;</script>",
    "/slashes/and spaces ",
    "日本語のファイル.doc",
]


@pytest.fixture
def user(api_client, make_token):
    """A user of its own, signed in by its access token cookie."""

    def make():
        user_id = str(uuid.uuid4())
        client = api_client(cookies={"access_token": make_token(user_id=user_id)})
        return user_id, client

    return make


def v2_pages(client, *, size=None, name=None):
    pages, token = [], None
    while True:
        params = {}
        if size is not None:
            params["pageSize"] = size
        if token:
            params["pageToken"] = token
        if name is not None:
            params["name"] = name
        reply = client.get("/api/v2/files", params=params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert list(body) == ["files", "nextPageToken"]
        pages.append(body["files"])
        token = body["nextPageToken"]
        if token is None:
            return pages


def test_v2_pages_newest_first_with_the_v2_file_shape(user, db_engine):
    user_id, client = user()
    rows = insert_files(db_engine, user_id, [f"doc-{i}.txt" for i in range(23)], ties=2)
    pages = v2_pages(client, size=10)
    assert [len(page) for page in pages] == [10, 10, 3]
    files = [f for page in pages for f in page]
    assert [f["fileId"] for f in files] == [r.file_id for r in rows]
    newest = rows[0]
    assert files[0] == {
        "fileId": newest.file_id,
        "fileName": newest.file_name,
        "mimeType": newest.mime_type,
        "size": newest.size,
        "s3Key": f"users/{user_id}/{newest.file_id}",
        "status": "UPLOADED",
        "createdAt": newest.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sha256": None,
    }
    default = client.get("/api/v2/files").json()  # 100 by default: all 23, no next page
    assert len(default["files"]) == 23 and default["nextPageToken"] is None


def test_v2_page_size_bounds(user, db_engine):
    user_id, client = user()
    insert_files(db_engine, user_id, [f"n{i}" for i in range(1005)])
    first = client.get("/api/v2/files").json()
    assert len(first["files"]) == 100 and first["nextPageToken"]
    assert len(client.get("/api/v2/files", params={"pageSize": 1000}).json()["files"]) == 1000
    big = client.get("/api/v2/files", params={"pageSize": 5000}).json()  # served as 1,000
    assert len(big["files"]) == 1000 and big["nextPageToken"]
    for bad in ("-1", "abc", "1.5", str(2**31), ""):
        reply = client.get("/api/v2/files", params={"pageSize": bad})
        assert reply.status_code == 400, (bad, reply.text)
        assert reply.json()["error"]


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "eyJ2IjoxfQ",  # {"v":1}
        "eyJ2IjoxLCJ0IjoiMSIsImkiOiJ4IiwiZiI6IngifQ",  # wrong types
        "%00%01",
        "x" * 2000,
    ],
)
def test_v2_a_forged_or_garbage_token_is_400_with_error(user, token):
    _, client = user()
    reply = client.get(f"/api/v2/files?pageToken={token}")
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert "page token" in body["error"]
    assert "Traceback" not in reply.text


def test_v2_name_filter_is_sent_to_the_server_and_literal(user, db_engine):
    user_id, client = user()
    insert_files(db_engine, user_id, ["100%.txt", "100x.txt", "a_b", "axb", *NAMES])

    def names(text):
        reply = client.get(f"/api/v2/files?name={quote(text, safe='')}")
        assert reply.status_code == 200, reply.text
        return sorted(f["fileName"] for f in reply.json()["files"])

    assert names("%") == ["100%.txt"]
    assert names("_") == ["a_b"]
    assert names("GRÖSSE") == []  # case folding, not Unicode normalisation: ß is not SS
    assert names("größe") == ["ümlaut Größe.txt"]
    assert names("😀") == ["emoji 😀.png"]
    assert names('" AND \\') == ['quote " and \\ backslash']
    pages = v2_pages(client, size=1, name="1")
    assert [f["fileName"] for page in pages for f in page] == ["100x.txt", "100%.txt"]
    too_long = client.get("/api/v2/files", params={"name": "x" * 256})
    assert too_long.status_code == 400 and too_long.json()["error"]


def test_v2_shows_nobody_elses_files_and_needs_a_session(user, db_engine, api_client):
    alice_id, alice = user()
    bob_id, bob = user()
    hers = insert_files(db_engine, alice_id, [f"x{i}" for i in range(12)])
    insert_files(db_engine, bob_id, [f"x{i}" for i in range(12)])
    listed = [f for page in v2_pages(alice, size=5, name="x") for f in page]
    assert [f["fileId"] for f in listed] == [r.file_id for r in hers]
    bobs_token = bob.get("/api/v2/files", params={"pageSize": 3}).json()["nextPageToken"]
    with_bobs_token = alice.get("/api/v2/files", params={"pageToken": bobs_token}).json()
    assert {f["fileId"] for f in with_bobs_token["files"]} <= {r.file_id for r in hers}
    anonymous = api_client().get("/api/v2/files")
    assert anonymous.status_code == 401 and anonymous.json()["error"]


# -- v1 ------------------------------------------------------------------------------------


def old_v1_reply(files: list[upload_pb2.File]) -> bytes:
    """What GET /api/files/list answered before pagination: the whole list as a dict,
    through the route's response model, serialized by FastAPI."""
    app = FastAPI()

    @app.get("/api/files/list", response_model=FileListReply)
    async def list_files():
        return {"success": True, "files": [_file_entry(file) for file in files]}

    async def get() -> bytes:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://old") as client:
            return (await client.get("/api/files/list")).content

    return asyncio.run(get())


def all_protos(upload_stub, make_token, user_id) -> list[upload_pb2.File]:
    metadata = [("authorization", f"Bearer {make_token(user_id=user_id)}")]
    files, token = [], ""
    while True:
        reply = upload_stub.ListFiles(
            upload_pb2.ListFilesRequest(page_size=1000, page_token=token), metadata=metadata
        )
        files.extend(reply.files)
        token = reply.next_page_token
        if not token:
            return files


@pytest.mark.parametrize("count", [0, 1, 999, 1000, 1001, 2500])
def test_v1_list_is_byte_for_byte_the_old_reply(user, db_engine, upload_stub, make_token, count):
    user_id, client = user()
    names = [NAMES[i % len(NAMES)] + f" {i}" for i in range(count)]
    rows = insert_files(db_engine, user_id, names, ties=3, step=timedelta(microseconds=1500))
    reply = client.get("/api/files/list")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    expected = old_v1_reply(all_protos(upload_stub, make_token, user_id))
    assert reply.content == expected
    body = json.loads(reply.content)
    assert [f["fileId"] for f in body["files"]] == [r.file_id for r in rows]
    if body["files"]:
        assert list(body["files"][0]) == [
            "fileId",
            "fileName",
            "mimeType",
            "size",
            "s3Key",
            "status",
            "createdAt",
        ]
    if count <= 1000:  # one page: one reply of known length
        assert reply.headers["content-length"] == str(len(reply.content))
    else:  # several pages: written as they come
        assert "content-length" not in reply.headers
        assert reply.headers["transfer-encoding"] == "chunked"


def _raw_get(url: str, path: str, cookie: str) -> socket.socket:
    """A GET on a socket with a small receive buffer, its reply left unread: the
    gateway's writes stall once the kernel's buffers are full."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: access_token={cookie}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    return sock


def _read_all(sock: socket.socket, timeout: float = 30) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_v1_list_cut_short_mid_stream_is_an_incomplete_reply(
    upload_settings, common_settings, auth_address, events_address, db_engine, make_token
):
    """A coordinator of its own stops after the first pages were sent: the gateway can no
    longer change the 200 it sent, so it closes the connection before the chunked body's
    end. 30,000 files (~10 MB of JSON) are more than the kernel's socket buffers hold, so
    the gateway is still paging when the coordinator goes."""
    user_id = str(uuid.uuid4())
    insert_files(db_engine, user_id, [f"file-{i:05d}.bin" for i in range(30_000)])
    upload = create_server(upload_settings, port=0)
    upload.start()
    settings = settings_for(
        GatewaySettings,
        common_settings,
        auth_service_addr=auth_address,
        upload_service_addr=f"127.0.0.1:{upload.port}",
        events_service_addr=events_address,
    )
    try:
        with serve_gateway(settings) as url:
            sock = _raw_get(url, "/api/files/list", make_token(user_id=user_id))
            try:
                sock.settimeout(30)
                head = sock.recv(65536)
                assert head.startswith(b"HTTP/1.1 200"), head[:200]
                assert b"transfer-encoding: chunked" in head.lower()
                upload.stop(0).wait()
                rest = _read_all(sock)
            finally:
                sock.close()
    finally:
        upload.stop(0).wait()
    raw = head + rest
    assert len(raw) < 8_000_000, "the whole list was sent: nothing stalled"
    assert not raw.endswith(b"0\r\n\r\n"), "the chunked body was ended as if complete"
    assert b"]}" not in raw[-64:]


def test_v1_list_keeps_its_error_shape(api_client):
    anonymous = api_client().get("/api/files/list")
    assert anonymous.status_code == 401
    assert anonymous.json()["success"] is False and anonymous.json()["error"]


def test_v1_list_dates_keep_their_milliseconds_form(user, db_engine):
    user_id, client = user()
    when = datetime(2024, 2, 29, 23, 59, 59, 987654, tzinfo=UTC)
    insert_files(db_engine, user_id, ["leap.txt"], start=when)
    (entry,) = client.get("/api/files/list").json()["files"]
    assert entry["createdAt"] == "2024-02-29T23:59:59.987Z"


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (1_709_251_199, 987_654_321),
        (1_709_251_199, 999_999_999),
        (1_796_645_964, 1_000_000),
        (253_402_300_799, 999_000_000),  # 9999-12-31T23:59:59.999
        (-86_400, 500_000_000),  # 1969-12-31
        (-62_135_596_800, 0),  # 0001-01-01
    ],
)
def test_the_fast_entries_write_what_the_old_ones_did(seconds, nanos):
    from google.protobuf.timestamp_pb2 import Timestamp

    from gateway.file_lists import v1_entry, v2_entry
    from gateway.routes.v2_uploads import file_v2

    for status in (1, 2, 3):
        for sha256 in ("", "ab" * 32):
            file = upload_pb2.File(
                file_id=str(uuid.uuid4()),
                file_name="n",
                mime_type="m",
                size=7,
                s3_key="k",
                status=status,
                created_at=Timestamp(seconds=seconds, nanos=nanos),
                sha256=sha256,
            )
            assert json.dumps(v1_entry(file)) == json.dumps(_file_entry(file))
            assert json.dumps(v2_entry(file)) == json.dumps(file_v2(file))
