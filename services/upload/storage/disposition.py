"""The Content-Disposition that makes a browser save a download under the file's real
name (RFC 6266, RFC 5987), signed into the presigned GET."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

# Characters the quoted `filename` fallback must not carry: quotes and backslashes (escaping
# is handled inconsistently by browsers), `%` (some decode it), path separators, controls.
_UNSAFE_FALLBACK = re.compile(r'["\\%/\x00-\x1f\x7f]')
# RFC 5987 attr-char minus the ones `quote` always keeps (letters, digits, "_.-~").
_ATTR_CHAR_EXTRA = "!#$&+^`|"
# Long names are shortened (extension kept): OS limits are ~255 bytes and the header
# travels inside a presigned URL.
MAX_DISPOSITION_NAME = 180


def _shorten(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and 0 < len(extension) <= 16:
        return stem[: limit - len(extension) - 1] + "." + extension
    return name[:limit]


def ascii_fallback(name: str) -> str:
    """A plain-ASCII version of `name` for clients that ignore `filename*`: accents are
    dropped (é -> e), other non-ASCII and unsafe characters become `_`."""
    decomposed = unicodedata.normalize("NFKD", name)
    without_marks = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    ascii_only = "".join(ch if ord(ch) < 128 else "_" for ch in without_marks)
    return _UNSAFE_FALLBACK.sub("_", ascii_only).strip() or "download"


def content_disposition(file_name: str) -> str:
    """`attachment` with both an ASCII `filename` and the exact UTF-8 `filename*` (RFC 6266,
    RFC 5987): modern browsers use `filename*`, old ones the fallback."""
    name = _shorten(file_name, MAX_DISPOSITION_NAME) or "download"
    encoded = quote(name, safe=_ATTR_CHAR_EXTRA, encoding="utf-8")
    return f"attachment; filename=\"{ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"
