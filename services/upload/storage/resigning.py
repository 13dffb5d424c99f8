"""Presigning many UploadPart URLs of one multipart upload quickly.

botocore spends ~200 µs per presigned URL (endpoint rules, request serialization, event
hooks, signing), so 10,000 parts cost ~2 s. Every URL signs its part's exact length
(`content-length`, so storage refuses a body of any other size) and, for v2, its checksum;
the URLs of one upload differ only in `partNumber`, in those signed headers' values and in
the signature, so botocore presigns the first one (it stays the
reference for the endpoint, the encoding and the credentials) and the others are signed
again from it: the SigV4 query signature of an S3 URL is an HMAC of a canonical request
under a signing key that depends only on the secret key, date, region and service, derived
once here. The result is byte-for-byte the URL botocore would make at the same second.

Every batch first re-signs the reference URL itself and compares with botocore's signature;
anything unexpected (another signature version, other signed headers, credentials that
rotated meanwhile) makes `PartUrlResigner.from_reference` return None, and the caller
presigns with botocore instead."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping, Sequence
from urllib.parse import SplitResult, unquote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Header names this module signs: lowercase tokens (content-length, x-amz-checksum-...).
_HEADER_NAME = re.compile(r"[a-z0-9-]+")


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """SigV4's derived key: HMAC chain over date (YYYYMMDD), region, service."""
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _canonical_host(url_parts: SplitResult) -> str:
    """The `host` header botocore signs: lowercase, without a default port or user info."""
    host = url_parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if url_parts.port is not None and url_parts.port != _DEFAULT_PORTS.get(url_parts.scheme):
        host = f"{host}:{url_parts.port}"
    return host


class PartUrlResigner:
    """Signs URLs that differ from a botocore-presigned UploadPart URL only in partNumber
    and in the values of the headers the reference signs besides host (each part's
    content-length, and its checksum for URLs that sign one)."""

    def __init__(
        self,
        url: str,
        pairs: list[tuple[str, str]],
        key: bytes,
        scope: str,
        amz_date: str,
        host: str,
        path: str,
        headers: tuple[str, ...],
    ) -> None:
        """`pairs`: (name, encoded value) in the URL's order, signature included;
        `headers`: the signed headers besides host, lowercase. Everything but the part
        number, those headers' values and the signature is the same in every URL, so it is
        laid out once here: url() only fills them in."""
        self._key = key
        self._headers = headers
        # botocore's canonical query string: the encoded pairs sorted by name (names are
        # unique), the signature left out; split around the part number's value.
        unsigned = sorted((name, value) for name, value in pairs if name != "X-Amz-Signature")
        at = [name for name, _ in unsigned].index("partNumber")
        before = "".join(f"{name}={value}&" for name, value in unsigned[:at])
        after = "".join(f"&{name}={value}" for name, value in unsigned[at + 1 :])
        # Canonical headers, sorted by name: host's line is fixed, the others' values are
        # each URL's own (a None stands for them here).
        names = sorted(("host", *headers))
        self._lines = [(name, f"host:{host}\n" if name == "host" else None) for name in names]
        self._request_head = f"PUT\n{path}\n{before}partNumber="
        self._request_middle = f"{after}\n"
        self._request_tail = f"\n{';'.join(names)}\nUNSIGNED-PAYLOAD"
        self._string_head = f"{ALGORITHM}\n{amz_date}\n{scope}\n"
        # The URL itself keeps botocore's order; braces are doubled for str.format.
        query = "&".join(
            "partNumber={part}"
            if name == "partNumber"
            else "X-Amz-Signature={signature}"
            if name == "X-Amz-Signature"
            else f"{name}={value}".replace("{", "{{").replace("}", "}}")
            for name, value in pairs
        )
        self._url = url.split("?", 1)[0].replace("{", "{{").replace("}", "}}") + "?" + query

    @classmethod
    def from_reference(
        cls,
        url: str,
        *,
        access_key: str,
        secret_key: str,
        token: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> PartUrlResigner | None:
        """A resigner for `url` (presigned by botocore for PUT), or None when the URL is not
        the SigV4 query-signed UploadPart URL expected, or is not signed with these
        credentials. `headers`: the headers the reference signs besides host, with its
        values (content-length, a part's checksum), whose values differ from URL to URL."""
        parts = urlsplit(url)
        pairs = [
            (name, value)
            for name, _, value in (item.partition("=") for item in parts.query.split("&"))
        ]
        params = dict(pairs)
        if len(params) != len(pairs) or "partNumber" not in params:
            return None
        values = {name.lower(): value for name, value in (headers or {}).items()}
        if (
            len(values) != len(headers or {})
            or "host" in values
            or not all(_HEADER_NAME.fullmatch(name) for name in values)
        ):
            return None
        signed = "%3B".join(sorted(("host", *values)))
        if (
            params.get("X-Amz-Algorithm") != ALGORITHM
            or params.get("X-Amz-SignedHeaders") != signed
        ):
            return None
        credential = unquote(params.get("X-Amz-Credential", "")).split("/")
        if len(credential) != 5 or credential[0] != access_key or credential[4] != "aws4_request":
            return None
        presented_token = params.get("X-Amz-Security-Token")
        if (unquote(presented_token) if presented_token is not None else None) != token:
            return None
        _, date, region, service, _ = credential
        resigner = cls(
            url,
            pairs,
            signing_key(secret_key, date, region, service),
            "/".join(credential[1:]),
            params.get("X-Amz-Date", ""),
            _canonical_host(parts),
            parts.path,
            tuple(sorted(values)),
        )
        # The reference itself must come out identical, or this is not botocore's scheme.
        if resigner.url(int(params["partNumber"]), values) != url:
            return None
        return resigner

    def url(self, part_number: int, headers: Mapping[str, str] | None = None) -> str:
        """The URL of part `part_number`; `headers`: the values of the signed headers besides
        host (lowercase names), every one of them."""
        values: Mapping[str, str] = headers if headers is not None else {}
        try:
            lines = "".join(
                line if line is not None else f"{name}:{' '.join(values[name].split())}\n"
                for name, line in self._lines
            )  # canonical header values are trimmed
        except KeyError:
            raise ValueError(f"the values of {', '.join(self._headers)} are needed") from None
        canonical_request = (
            f"{self._request_head}{part_number}{self._request_middle}{lines}{self._request_tail}"
        )
        string_to_sign = self._string_head + hashlib.sha256(canonical_request.encode()).hexdigest()
        signature = hmac.new(self._key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        return self._url.format(part=part_number, signature=signature)


class LazyPartUrls:
    """URLs of parts in order: those made already, then those `resigner` makes as they are
    read (every reading makes them again), so that a reply can take them one at a time.
    `to_resign`: the numbers of those parts, `lengths`: each one's content length."""

    def __init__(
        self,
        made: list[str],
        resigner: PartUrlResigner | None = None,
        to_resign: Sequence[int] = (),
        lengths: Sequence[int] = (),
    ) -> None:
        if to_resign and resigner is None:
            raise ValueError("parts to re-sign need a resigner")
        if len(lengths) != len(to_resign):
            raise ValueError("one length per part to re-sign is needed")
        self._made = made
        self._resigner = resigner
        self._to_resign = to_resign
        self._lengths = lengths

    def __len__(self) -> int:
        return len(self._made) + len(self._to_resign)

    def __iter__(self) -> Iterator[str]:
        yield from self._made
        resigner = self._resigner
        if resigner is None:  # nothing to re-sign (the constructor made sure)
            return
        for number, length in zip(self._to_resign, self._lengths):
            yield resigner.url(number, {"content-length": str(length)})
