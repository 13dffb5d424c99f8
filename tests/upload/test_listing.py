"""ListFiles a page at a time over gRPC: newest first (ties by id), page sizes and their
bounds, page tokens that continue exactly where the previous page ended whatever is
created meanwhile, forged or garbage tokens refused as INVALID_ARGUMENT, the name filter
(case-insensitive, `%`, `_` and `\\` literal), and nobody else's files, ever."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from dropfile.upload.v1 import upload_pb2
from services.upload.listing import encode_page_token
from services.upload.store.listing import Position
from tests.listing_rows import insert_files

from .helpers import assert_code, initiate


def page(api, user, *, size=0, token="", name=""):
    return api.ListFiles(
        upload_pb2.ListFilesRequest(page_size=size, page_token=token, name_filter=name),
        metadata=user.metadata,
    )


def every_page(api, user, *, size=0, name=""):
    """Every page until next_page_token is empty: a list of lists of file ids."""
    pages, token = [], ""
    while True:
        reply = page(api, user, size=size, token=token, name=name)
        pages.append([f.file_id for f in reply.files])
        token = reply.next_page_token
        if not token:
            return pages
        assert len(pages) < 1000, "paging does not end"


def ids(rows):
    return [row.file_id for row in rows]


def test_pages_are_newest_first_ties_by_id_and_cover_every_file(api, new_user, db_engine):
    user = new_user()
    # 250 files, three to a creation time: the id breaks every tie.
    rows = insert_files(db_engine, user.user_id, [f"f{i}.txt" for i in range(250)], ties=3)
    pages = every_page(api, user, size=40)
    assert [len(p) for p in pages] == [40] * 6 + [10]
    assert [fid for p in pages for fid in p] == ids(rows)
    first = page(api, user, size=1).files[0]
    newest = rows[0]
    assert first.file_name == newest.file_name and first.size == newest.size
    assert first.mime_type == newest.mime_type
    assert first.s3_key == f"users/{user.user_id}/{newest.file_id}"
    assert first.status == upload_pb2.FILE_STATUS_UPLOADED
    assert first.created_at.ToDatetime(tzinfo=UTC) == newest.created_at


def test_page_size_defaults_to_100_and_is_served_up_to_1000(api, new_user, db_engine):
    user = new_user()
    rows = insert_files(db_engine, user.user_id, [f"n{i}" for i in range(1001)])
    default = page(api, user)
    assert [f.file_id for f in default.files] == ids(rows[:100]) and default.next_page_token
    largest = page(api, user, size=1000)
    assert [f.file_id for f in largest.files] == ids(rows[:1000])
    beyond = page(api, user, size=5000)  # served as 1,000 (AIP-158), not refused
    assert [f.file_id for f in beyond.files] == ids(rows[:1000])
    last = page(api, user, size=5000, token=beyond.next_page_token)
    assert [f.file_id for f in last.files] == ids(rows[1000:]) and last.next_page_token == ""
    err = assert_code(grpc.StatusCode.INVALID_ARGUMENT, page, api, user, size=-1)
    assert "page size" in err.details()


def test_a_full_last_page_has_no_token_and_an_empty_list_one_empty_page(api, new_user, db_engine):
    user = new_user()
    assert every_page(api, user) == [[]]
    rows = insert_files(db_engine, user.user_id, ["a", "b", "c", "d"])
    assert every_page(api, user, size=2) == [ids(rows[:2]), ids(rows[2:])]
    assert every_page(api, user, size=4) == [ids(rows)]


def test_the_cursor_is_stable_across_inserts_and_deletes(api, new_user, db_engine):
    user = new_user()
    rows = insert_files(db_engine, user.user_id, [f"old{i}" for i in range(30)])
    first = page(api, user, size=10)
    assert [f.file_id for f in first.files] == ids(rows[:10])
    # Meanwhile: new uploads (now, newer than all), and one already listed file deleted.
    fresh = [initiate(api, user, 10, name=f"new{i}") for i in range(3)]
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=rows[0].file_id), metadata=user.metadata)
    second = page(api, user, size=10, token=first.next_page_token)
    assert [f.file_id for f in second.files] == ids(rows[10:20])
    # ... and an older file of the part still to come shows where it belongs.
    older = insert_files(
        db_engine, user.user_id, ["late"], start=rows[25].created_at - timedelta(microseconds=1)
    )
    third = page(api, user, size=10, token=second.next_page_token)
    assert [f.file_id for f in third.files] == ids(rows[20:26]) + ids(older) + ids(rows[26:29])
    fourth = page(api, user, size=10, token=third.next_page_token)
    assert [f.file_id for f in fourth.files] == ids(rows[29:]) and not fourth.next_page_token
    # A first page asked for again starts with the new files.
    again = [f.file_id for f in page(api, user, size=10).files]
    assert again[:3] == [u.file_id for u in reversed(fresh)]
    assert rows[0].file_id not in again


def _token(payload) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GOOD = {"v": 1, "t": 1_600_000_000_000_000, "i": "8a6e0804-2bd0-4c00-8b8a-4d3a2b1c0d0e"}


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "not base64 at all ~~~",
        "=" * 8,
        "é",
        _token(b"\xff\xfe not utf-8"),
        _token(b"not json"),
        _token(b"[1, 2, 3]"),
        _token({"v": 1}),
        _token({**GOOD, "f": "x", "extra": 1}),
        _token({**GOOD, "f": "x", "v": 2}),
        _token({**GOOD, "f": "x", "t": "1600000000000000"}),
        _token({**GOOD, "f": "x", "t": 1.5}),
        _token({**GOOD, "f": "x", "t": True}),
        _token({**GOOD, "f": "x", "t": 10**30}),
        _token({**GOOD, "f": "x", "t": -(10**18)}),
        _token({**GOOD, "f": "x", "i": "not-a-uuid"}),
        _token({**GOOD, "f": "x", "i": 42}),
        _token({**GOOD, "f": None}),
        "A" * 600,
    ],
)
def test_a_forged_or_garbage_token_is_invalid_argument(api, alice, token):
    err = assert_code(grpc.StatusCode.INVALID_ARGUMENT, page, api, alice, token=token)
    assert "page token" in err.details()


def test_a_token_of_another_filter_is_refused_and_a_well_formed_one_is_only_a_position(
    api, new_user, db_engine
):
    user = new_user()
    rows = insert_files(db_engine, user.user_id, [f"report-{i}.pdf" for i in range(6)])
    filtered = page(api, user, size=2, name="report")
    err = assert_code(
        grpc.StatusCode.INVALID_ARGUMENT, page, api, user, token=filtered.next_page_token
    )
    assert "another name filter" in err.details()
    assert_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        page,
        api,
        user,
        token=filtered.next_page_token,
        name="REPORT",
    )
    # A token made up by hand (the format is no secret) only moves the caller's own start.
    micros = (rows[2].created_at - EPOCH) // timedelta(microseconds=1)
    made_up = encode_page_token(Position(micros, uuid.UUID(rows[2].file_id)), "")
    assert [f.file_id for f in page(api, user, token=made_up).files] == ids(rows[3:])
    # ... written as the service writes it: characters base64 decoding skips are refused.
    for spoiled in (made_up[:8] + "." + made_up[8:], made_up + "\n", made_up + "=="):
        assert_code(grpc.StatusCode.INVALID_ARGUMENT, page, api, user, token=spoiled)


def test_the_name_filter_is_a_case_insensitive_literal_substring(api, new_user, db_engine):
    user = new_user()
    names = [
        "100%.txt",
        "100x.txt",
        "a_b.bin",
        "axb.bin",
        "back\\slash",
        "backslash",
        "Résumé FINAL.pdf",
        "résumé draft.pdf",
        "notes.md",
    ]
    insert_files(db_engine, user.user_id, names)

    def names_for(text):
        return sorted(f.file_name for f in page(api, user, name=text).files)

    assert names_for("%") == ["100%.txt"]
    assert names_for("0%.") == ["100%.txt"]
    assert names_for("_") == ["a_b.bin"]
    assert names_for("A_B") == ["a_b.bin"]
    assert names_for("\\") == ["back\\slash"]
    assert names_for("K\\S") == ["back\\slash"]
    assert names_for("RÉSUMÉ") == ["Résumé FINAL.pdf", "résumé draft.pdf"]
    assert names_for("final") == ["Résumé FINAL.pdf"]
    assert names_for(".bin") == ["a_b.bin", "axb.bin"]
    assert names_for("XB") == ["axb.bin"]  # short texts too (no trigram)
    assert names_for("é") == ["Résumé FINAL.pdf", "résumé draft.pdf"]
    assert names_for("nothing like it") == []
    assert names_for("") == sorted(names)
    err = assert_code(grpc.StatusCode.INVALID_ARGUMENT, page, api, user, name="x" * 256)
    assert "255" in err.details()
    assert_code(grpc.StatusCode.INVALID_ARGUMENT, page, api, user, name="a\x00b")


def test_filtered_pages_follow_each_other(api, new_user, db_engine):
    user = new_user()
    names = [f"{'match' if i % 3 == 0 else 'other'}-{i}" for i in range(90)]
    rows = insert_files(db_engine, user.user_id, names, ties=2)
    expected = [r.file_id for r in rows if "match" in r.file_name]
    pages = every_page(api, user, size=7, name="MATCH")
    assert [fid for p in pages for fid in p] == expected
    assert all(len(p) == 7 for p in pages[:-1])


def test_another_users_files_never_appear(api, new_user, db_engine):
    alice, bob = new_user(), new_user()
    start = datetime(2021, 6, 1, tzinfo=UTC)
    hers = insert_files(db_engine, alice.user_id, [f"shared-{i}" for i in range(25)], start=start)
    # Bob's files have the same names and are interleaved in time with hers.
    insert_files(
        db_engine,
        bob.user_id,
        [f"shared-{i}" for i in range(25)],
        start=start + timedelta(milliseconds=500),
    )
    assert [f for p in every_page(api, alice, size=4) for f in p] == ids(hers)
    assert [f for p in every_page(api, alice, size=4, name="shared") for f in p] == ids(hers)
    # Bob's token used by Alice is a position in Alice's list, nothing more.
    bobs_first = page(api, bob, size=5)
    with_bobs_token = page(api, alice, size=100, token=bobs_first.next_page_token)
    assert {f.file_id for f in with_bobs_token.files} <= set(ids(hers))
    assert all(f.s3_key.startswith(f"users/{alice.user_id}/") for f in with_bobs_token.files)
