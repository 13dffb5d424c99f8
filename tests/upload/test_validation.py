"""Input rules that need no server: names, MIME types, part lists, settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.errors import InvalidArgument
from services.common.settings import load_settings
from services.upload.settings import UploadSettings
from services.upload.validation import (
    PartRef,
    clean_etag,
    clean_file_name,
    clean_mime_type,
    ordered_parts,
    parse_file_id,
)


@pytest.mark.parametrize(
    "raw,clean",
    [
        ("report.pdf", "report.pdf"),
        ("  padded name.txt  ", "padded name.txt"),
        ("new\nline\r.txt", "newline.txt"),
        ("nul\x00.txt", "nul.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),  # right-to-left override disguises extensions
        ("cafe\u0301.txt", "café.txt"),  # NFC
        ('résumé "final".pdf', 'résumé "final".pdf'),
    ],
)
def test_file_names_lose_control_characters(raw, clean):
    assert clean_file_name(raw) == clean


@pytest.mark.parametrize(
    "raw,needle",
    [
        ("", "required"),
        ("   ", "required"),
        ("\x00\x01", "required"),
        ("x" * 1025, "1024"),
    ],
)
def test_bad_file_names_are_refused(raw, needle):
    with pytest.raises(InvalidArgument, match=needle):
        clean_file_name(raw)


def test_a_1024_character_name_is_accepted():
    assert clean_file_name("é" * 1024) == "é" * 1024


@pytest.mark.parametrize(
    "raw,clean",
    [
        ("", "application/octet-stream"),
        ("application/pdf", "application/pdf"),
        ("Image/PNG", "image/png"),
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
    ],
)
def test_mime_types(raw, clean):
    assert clean_mime_type(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "pdf",
        "text/",
        "/plain",
        "text/plain/x",
        "text plain",
        "text/plain\r\nX-Evil: 1",
        "a/" + "b" * 300,
        "tëxt/plain",
    ],
)
def test_bad_mime_types_are_refused(raw):
    with pytest.raises(InvalidArgument, match="type/subtype"):
        clean_mime_type(raw)


@pytest.mark.parametrize("raw", ["", "not-a-uuid", "1234", "g" * 32])
def test_file_ids_must_be_uuids(raw):
    with pytest.raises(InvalidArgument, match="file_id"):
        parse_file_id(raw)


def test_etags_lose_quotes_and_must_be_printable():
    assert clean_etag('"ABC123"') == "abc123"
    for bad in ("", '""', "a b", "x" * 201):
        with pytest.raises(InvalidArgument):
            clean_etag(bad)


def test_ordered_parts_accepts_each_part_once_in_any_order():
    parts = [PartRef(2, '"b"'), PartRef(1, "a"), PartRef(3, "c")]
    assert ordered_parts(parts, 3) == [(1, "a"), (2, "b"), (3, "c")]


@pytest.mark.parametrize(
    "numbers,needle",
    [
        ([], "missing from the request: 1, 2, 3"),
        ([1, 3], "missing from the request: 2"),
        ([1, 2, 2, 3], "part 2 is listed more than once"),
        ([0, 1, 2, 3], "part number 0 is outside 1..3"),
        ([1, 2, 3, 4], "part number 4 is outside 1..3"),
    ],
)
def test_ordered_parts_refuses_missing_duplicate_and_extra_parts(numbers, needle):
    with pytest.raises(InvalidArgument, match=needle):
        ordered_parts([PartRef(n, "e") for n in numbers], 3)


def test_ordered_parts_refuses_an_empty_etag():
    with pytest.raises(InvalidArgument, match="ETag of part 2"):
        ordered_parts([PartRef(1, "a"), PartRef(2, "")], 2)


def test_settings_defaults():
    settings = UploadSettings(_env_file=None)
    assert settings.part_size_bytes == 5 * 1024 * 1024
    assert settings.max_file_size_bytes == 1024**3
    assert settings.upload_grpc_port == 50052
    assert (settings.presigned_url_ttl_seconds, settings.upload_session_ttl_seconds) == (
        3600,
        86400,
    )


@pytest.mark.parametrize(
    "values",
    [
        {"part_size_bytes": 1024},  # S3 refuses parts under 5 MiB
        {"max_file_size_bytes": 0},
        {"max_file_size_bytes": 5 * 1024 * 1024 * 10_000 + 1},  # over 10,000 parts
        {"presigned_url_ttl_seconds": 0},
        {"presigned_url_ttl_seconds": 8 * 24 * 3600},  # SigV4 allows 7 days
        {"upload_grpc_port": 70000},
    ],
)
def test_bad_settings_are_refused(values):
    with pytest.raises(ValidationError):
        UploadSettings(_env_file=None, **values)


def test_a_bad_environment_stops_the_process_with_a_clear_line(monkeypatch, capsys):
    monkeypatch.setenv("MAX_FILE_SIZE_BYTES", "-1")
    with pytest.raises(SystemExit) as exited:
        load_settings(UploadSettings, _env_file=None)
    assert exited.value.code == 2
    assert "MAX_FILE_SIZE_BYTES" in capsys.readouterr().err
