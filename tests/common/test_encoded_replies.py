"""Replies encoded straight to protobuf's wire format (services/common/encoded_replies.py)
are byte for byte what protobuf makes of the same message, and the server's serializer
sends them as they are."""

from __future__ import annotations

import pytest

from dropfile.upload.v1 import upload_pb2
from services.common.encoded_replies import EncodedReply, encode_reply, passing_encoded

URLS = [
    f"https://s3.example.com/b/k?partNumber={n}&X-Amz-Signature={n:064x}" for n in range(1, 301)
] + ["ü/é ☃ 𝄞", "", "x" * 20_000]  # non-ASCII, empty, long


@pytest.mark.parametrize(
    "fields",
    [
        {"upload_id": "up-1", "part_size": 5 * 1024 * 1024, "s3_key": "users/a/b"},
        {"part_size": 7},  # only a field numbered after the list
        {"upload_id": "up-2"},  # only one numbered before it
        {},
    ],
)
@pytest.mark.parametrize("urls", [URLS, [], ["one"]])
def test_encoded_reply_is_protobufs_encoding(fields, urls):
    encoded = encode_reply(
        upload_pb2.InitiateUploadResponse(**fields), "part_urls", iter(urls)
    )  # read once, as it is made
    expected = upload_pb2.InitiateUploadResponse(part_urls=urls, **fields)
    assert encoded.data == expected.SerializeToString()
    assert upload_pb2.InitiateUploadResponse.FromString(encoded.data) == expected


def test_the_list_must_be_left_out_of_the_message():
    with pytest.raises(ValueError):
        encode_reply(upload_pb2.InitiateUploadResponse(part_urls=["a"]), "part_urls", ["b"])


def test_the_serializer_sends_encoded_replies_as_they_are():
    serialize = passing_encoded(upload_pb2.InitiateUploadResponse.SerializeToString)
    message = upload_pb2.InitiateUploadResponse(upload_id="up-1", part_urls=["a"])
    assert serialize(EncodedReply(b"\x0a\x01x")) == b"\x0a\x01x"
    assert serialize(message) == message.SerializeToString()
    # A method without a serializer sends what it is given, as gRPC does.
    assert passing_encoded(None)(b"raw") == b"raw"
