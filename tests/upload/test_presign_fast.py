"""Presigning many UploadPart URLs at once (services/upload/storage/resigning.py): the URLs
re-signed from botocore's first one must be byte-for-byte the URLs botocore makes itself at
the same second, for every addressing style, with and without a session token, each signed for its
own part's length; and anything that does not match the expected scheme falls back to
botocore."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from services.upload.storage import PartUrlResigner, Storage

KEY = "users/ü ser/a+b%c d"  # characters botocore must encode in the path
UPLOAD_ID = "up/id+1=="  # and in the query


def _client(*, endpoint: str | None, token: str | None, region: str = "eu-west-3"):
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalr/K7+MDENG/bPxRfiCY",
        aws_session_token=token,
    )
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path"} if endpoint else {},
    )
    return session.client("s3", endpoint_url=endpoint, config=config)


def _botocore_url(client, number: int, length: int = 5 << 20) -> str:
    return client.generate_presigned_url(
        "upload_part",
        Params={
            "Bucket": "my-bucket",
            "Key": KEY,
            "UploadId": UPLOAD_ID,
            "PartNumber": number,
            "ContentLength": length,
        },
        ExpiresIn=900,
    )


def _lengths(numbers: range, last: int = 1234) -> list[int]:
    """5 MiB parts, the last one shorter (as a file's)."""
    return [5 << 20] * (len(numbers) - 1) + [last] if numbers else []


def _amz_date(url: str) -> str:
    return url.split("X-Amz-Date=")[1][:16]


@pytest.mark.slow
@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:38333", "https://s3.example.com:8443", "https://s3.example.com:443", None],
)
@pytest.mark.parametrize("token", [None, "session/token+with=odd chars"])
def test_urls_are_byte_identical_to_botocores(endpoint, token):
    client = _client(endpoint=endpoint, token=token)
    storage = Storage(client, "my-bucket")
    numbers = [1, 2, 3, 99, 1000, 10_000]
    for _ in range(5):  # botocore stamps each URL with the current second: retry across one
        urls = storage.part_urls.presign_parts(
            KEY,
            upload_id=UPLOAD_ID,
            part_numbers=range(1, 10_001),
            lengths=_lengths(range(1, 10_001)),
            ttl=900,
        )
        expected = [
            _botocore_url(client, number, 1234 if number == 10_000 else 5 << 20)
            for number in numbers
        ]
        if {_amz_date(url) for url in expected} == {_amz_date(urls[0])}:
            break
    assert len(urls) == 10_000
    assert [urls[number - 1] for number in numbers] == expected
    assert "X-Amz-SignedHeaders=content-length%3Bhost&" in urls[-1]


@pytest.mark.slow
def test_a_range_not_starting_at_one_keeps_its_numbers():
    client = _client(endpoint="http://127.0.0.1:38333", token=None)
    urls = Storage(client, "my-bucket").part_urls.presign_parts(
        KEY, upload_id=UPLOAD_ID, part_numbers=range(40, 43), lengths=[1, 2, 3], ttl=900
    )
    assert [url.split("partNumber=")[1].split("&")[0] for url in urls] == ["40", "41", "42"]
    assert (
        Storage(client, "my-bucket").part_urls.presign_parts(
            KEY, upload_id=UPLOAD_ID, part_numbers=range(5, 5), lengths=[], ttl=900
        )
        == []
    )
    with pytest.raises(ValueError):  # every URL is signed for a length
        Storage(client, "my-bucket").part_urls.presign_parts(
            KEY, upload_id=UPLOAD_ID, part_numbers=range(40, 43), lengths=[1, 2], ttl=900
        )


def test_an_empty_part_is_signed_for_zero_bytes():
    client = _client(endpoint="http://127.0.0.1:38333", token=None)
    for _ in range(5):
        [url] = Storage(client, "my-bucket").part_urls.presign_parts(
            KEY, upload_id=UPLOAD_ID, part_numbers=range(1, 2), lengths=[0], ttl=900
        )
        expected = _botocore_url(client, 1, 0)
        if _amz_date(url) == _amz_date(expected):
            break
    assert url == expected and "content-length%3Bhost" in url


def test_a_reference_signed_otherwise_is_not_resigned():
    client = _client(endpoint="http://127.0.0.1:38333", token=None)
    url = _botocore_url(client, 1)
    frozen = dict(
        access_key="AKIDEXAMPLE",
        secret_key="wJalr/K7+MDENG/bPxRfiCY",
        token=None,
        headers={"content-length": str(5 << 20)},
    )
    assert PartUrlResigner.from_reference(url, **frozen) is not None
    # Told of another length than the reference signs: the self-check refuses it.
    assert (
        PartUrlResigner.from_reference(url, **{**frozen, "headers": {"content-length": "1"}})
        is None
    )
    # Or of none: the signed headers are not the ones expected.
    assert PartUrlResigner.from_reference(url, **{**frozen, "headers": None}) is None
    # Other credentials (rotated between the two calls): the self-check refuses them.
    assert PartUrlResigner.from_reference(url, **{**frozen, "secret_key": "other"}) is None
    assert PartUrlResigner.from_reference(url, **{**frozen, "access_key": "AKIDOTHER"}) is None
    assert PartUrlResigner.from_reference(url, **{**frozen, "token": "unexpected"}) is None
    # Not a SigV4 query-signed part URL.
    assert PartUrlResigner.from_reference(url.replace("partNumber=1&", ""), **frozen) is None
    assert (
        PartUrlResigner.from_reference(
            url.replace(
                "X-Amz-SignedHeaders=content-length%3Bhost",
                "X-Amz-SignedHeaders=content-length%3Bhost%3Bx-amz-acl",
            ),
            **frozen,
        )
        is None
    )


def test_storage_falls_back_to_botocore_without_credentials_it_can_read():
    client = _client(endpoint="http://127.0.0.1:38333", token=None)

    class OpaquePresigner:
        """A presigner whose credentials resigning.py cannot see (no _request_signer)."""

        def generate_presigned_url(self, *args, **kwargs):
            return client.generate_presigned_url(*args, **kwargs)

    storage = Storage(client, "my-bucket", presigner=OpaquePresigner())
    for _ in range(5):
        urls = storage.part_urls.presign_parts(
            KEY, upload_id=UPLOAD_ID, part_numbers=range(1, 4), lengths=[7, 7, 3], ttl=900
        )
        expected = [
            _botocore_url(client, number, length) for number, length in ((1, 7), (2, 7), (3, 3))
        ]
        if {_amz_date(url) for url in expected + urls} == {_amz_date(urls[0])}:
            break
    assert urls == expected


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32C"])
def test_urls_signing_each_parts_checksum_are_byte_identical_to_botocores(algorithm):
    import base64
    import hashlib

    from services.upload.checksums import ChecksumAlgorithm

    kind = ChecksumAlgorithm(algorithm)
    client = _client(endpoint="http://127.0.0.1:38333", token="a-session-token")
    storage = Storage(client, "my-bucket")
    numbers = range(7, 7 + 300)
    checksums = [
        base64.b64encode(hashlib.sha256(str(n).encode()).digest()[: kind.digest_bytes]).decode()
        for n in numbers
    ]
    for _ in range(5):
        urls = storage.part_urls.presign_checksummed_parts(
            KEY,
            upload_id=UPLOAD_ID,
            part_numbers=numbers,
            lengths=_lengths(numbers, last=0),
            algorithm=kind,
            checksums=checksums,
            ttl=900,
        )
        expected = [
            client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": "my-bucket",
                    "Key": KEY,
                    "UploadId": UPLOAD_ID,
                    "PartNumber": number,
                    "ContentLength": length,
                    kind.s3_param: checksum,
                },
                ExpiresIn=900,
            )
            for number, length, checksum in (
                (7, 5 << 20, checksums[0]),
                (8, 5 << 20, checksums[1]),
                (306, 0, checksums[-1]),
            )
        ]
        if {_amz_date(url) for url in expected} == {_amz_date(urls[0])}:
            break
    assert [urls[0], urls[1], urls[-1]] == expected
    assert f"content-length%3Bhost%3Bx-amz-checksum-{algorithm.lower()}" in expected[1]
    with pytest.raises(ValueError):
        storage.part_urls.presign_checksummed_parts(
            KEY,
            upload_id=UPLOAD_ID,
            part_numbers=numbers,
            lengths=_lengths(numbers),
            algorithm=kind,
            checksums=checksums[:-1],
            ttl=900,
        )


@pytest.mark.slow
@pytest.mark.parametrize("resignable", [True, False])
def test_urls_made_as_they_are_read_are_presign_parts_urls(resignable):
    client = _client(endpoint="http://127.0.0.1:38333", token="a-session-token")

    class OpaquePresigner:
        """A presigner whose credentials resigning.py cannot see: botocore signs each URL."""

        def generate_presigned_url(self, *args, **kwargs):
            return client.generate_presigned_url(*args, **kwargs)

    storage = Storage(client, "my-bucket", presigner=None if resignable else OpaquePresigner())
    for _ in range(5):
        lazy = storage.part_urls.presign_parts_lazily(
            KEY,
            upload_id=UPLOAD_ID,
            part_numbers=range(3, 303),
            lengths=_lengths(range(3, 303)),
            ttl=900,
        )
        urls = list(lazy)
        expected = storage.part_urls.presign_parts(
            KEY,
            upload_id=UPLOAD_ID,
            part_numbers=range(3, 303),
            lengths=_lengths(range(3, 303)),
            ttl=900,
        )
        if {_amz_date(url) for url in urls + expected} == {_amz_date(urls[0])}:
            break
    assert len(lazy) == 300
    assert urls == expected
    assert list(lazy) == urls  # read again, made again: the same
    assert (
        list(
            storage.part_urls.presign_parts_lazily(
                KEY, upload_id=UPLOAD_ID, part_numbers=range(5, 5), lengths=[], ttl=900
            )
        )
        == []
    )
