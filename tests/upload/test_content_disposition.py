"""The Content-Disposition of downloads (RFC 6266 with an RFC 5987 `filename*`)."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from services.upload.storage import ascii_fallback, content_disposition

PATTERN = re.compile(
    r"""^attachment; filename="([^"\\]*)"; filename\*=UTF-8''([A-Za-z0-9!#$&+.^_`|~%-]*)$"""
)


def parse(header: str) -> tuple[str, str]:
    match = PATTERN.match(header)
    assert match, header
    return match.group(1), unquote(match.group(2), encoding="utf-8", errors="strict")


@pytest.mark.parametrize(
    "name",
    [
        "report.pdf",
        'résumé "final".pdf',
        "back\\slash and spaces.txt",
        "日本語のファイル.txt",
        "emoji 🎉 party.png",
        "percent %41 and 100%.txt",
        "semi;colon,comma='quote'.csv",
        "a/b/../c.txt",
    ],
)
def test_filename_star_carries_the_exact_name_and_the_header_is_well_formed(name):
    fallback, exact = parse(content_disposition(name))
    assert exact == name
    assert fallback.isascii()
    assert "%" not in fallback and "/" not in fallback


def test_the_ascii_fallback_keeps_letters_without_accents_and_replaces_quotes():
    header = content_disposition('résumé "final".pdf')
    assert header == (
        'attachment; filename="resume _final_.pdf"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
    )


@pytest.mark.parametrize(
    "name,fallback",
    [
        ("plain.txt", "plain.txt"),
        ('a"b\\c.txt', "a_b_c.txt"),
        ("日本.txt", "__.txt"),
        ("tab\there.txt", "tab_here.txt"),
        ("日本", "__"),
        ("", "download"),
    ],
)
def test_ascii_fallback(name, fallback):
    assert ascii_fallback(name) == fallback


def test_long_names_are_shortened_keeping_the_extension():
    fallback, exact = parse(content_disposition("x" * 1000 + ".tar.gz"))
    assert exact.endswith(".gz") and len(exact) == 180
    assert fallback == exact
