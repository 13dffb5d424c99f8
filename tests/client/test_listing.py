"""The SDK and CLI page through long lists (GET /api/v2/files): every file, newest first,
a page of 1,000 at a time; `--limit N` only the newest N; the SDK's name filter asks the
server. The files are written straight into the database (2,300 of them: three pages)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from dropfile_client import DropfileClient
from tests.listing_rows import insert_files

from .conftest import PASSWORD

COUNT = 2300


def user_id_of(access_token: str) -> str:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


@pytest.fixture
def many_files(cli, account, db_engine):
    """The signed-in CLI user's 2,300 files, newest first."""
    user_id = user_id_of(cli.session()["cookies"]["access_token"])
    names = [f"{'photo' if i % 10 == 0 else 'doc'}-{i:04d}.bin" for i in range(COUNT)]
    return insert_files(db_engine, user_id, names, ties=2)


def test_ls_lists_every_page(cli, many_files):
    listing = json.loads(cli("ls", "--json").assert_ok().out)
    assert [entry["fileId"] for entry in listing] == [row.file_id for row in many_files]
    table = cli("ls").assert_ok().out.splitlines()
    assert len(table) == 1 + COUNT and table[0].startswith("ID")
    assert many_files[0].file_id in table[1] and many_files[-1].file_id in table[-1]


def test_ls_limit_shows_the_newest_and_says_there_are_more(cli, many_files):
    result = cli("ls", "--limit", "3").assert_ok()
    lines = result.out.splitlines()
    assert len(lines) == 4
    assert [line.split()[0] for line in lines[1:]] == [r.file_id for r in many_files[:3]]
    assert "newest 3 files; there are more" in result.err
    listing = json.loads(cli("ls", "--json", "--limit", "1500").assert_ok().out)
    assert [entry["fileId"] for entry in listing] == [r.file_id for r in many_files[:1500]]
    everything = cli("ls", "--json", "--limit", str(COUNT)).assert_ok()
    assert len(json.loads(everything.out)) == COUNT and everything.err == ""
    for bad in ("0", "-2", "many"):
        assert cli("ls", "--limit", bad).code == 2


def test_the_sdk_pages_with_the_name_filter_on_the_server(cli, gateway_url, many_files, tmp_path):
    photos = [r.file_id for r in many_files if r.file_name.startswith("photo")]
    session = cli.session_file
    with DropfileClient(gateway_url, session_file=session) as client:
        assert [f.file_id for f in client.list(name="PHOTO")] == photos
        assert [f.file_id for f in client.list(name="photo", limit=7)] == photos[:7]
        first = client.list_page(page_size=2, name="photo")
        assert [f.file_id for f in first.files] == photos[:2] and first.next_page_token
        second = client.list_page(page_size=2, page_token=first.next_page_token, name="photo")
        assert [f.file_id for f in second.files] == photos[2:4]
        pages = iter(client.iter_files(page_size=1000))
        assert next(pages).file_id == many_files[0].file_id  # one page asked for so far
        assert client.list(name="no such name") == []
        with pytest.raises(ValueError):
            client.list(limit=0)


def test_a_new_account_lists_nothing(gateway_url, events_server, tmp_path):
    with DropfileClient(gateway_url, session_file=tmp_path / "session.json") as client:
        client.signup(f"list-{uuid.uuid4().hex[:12]}@example.com", PASSWORD, "Empty")
        assert client.list() == []
        page = client.list_page()
        assert page.files == [] and page.next_page_token is None
