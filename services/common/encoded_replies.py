"""Replies of many megabytes, encoded straight to protobuf's wire format.

gRPC sends a reply made as a protobuf message by holding it three times over: the message,
its encoding (upb grows the buffer by doubling, so up to twice the reply's size), and gRPC's
own copy of the bytes. For a reply that is mostly one long repeated string field (v1's
10,000 presigned URLs: ~5 MB) that is ~20 MB at once. `encode_reply` writes the bytes
itself, value by value, from values that may be made as they are read: only the encoding
and gRPC's copy are ever held. The bytes are exactly those protobuf makes for the same
message (fields in number order), so callers see no difference.

A servicer returns the EncodedReply; the server's interceptor (grpc_server.py) makes every
method's serializer send one as it is (`passing_encoded`)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf.message import Message

_LENGTH_DELIMITED = 2  # protobuf's wire type of strings


@dataclass(frozen=True)
class EncodedReply:
    """A reply message already encoded, sent as it is."""

    data: bytes


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_reply(message: Message, field: str, values: Iterable[str]) -> EncodedReply:
    """`message` with `values` as its repeated string `field` (left empty in `message`),
    encoded: the fields numbered before `field`, then each value as it is read, then the
    fields numbered after it."""
    number = message.DESCRIPTOR.fields_by_name[field].number
    if getattr(message, field):
        raise ValueError(f"{field} must be left empty in the message: it is given as values")
    before, after = type(message)(), type(message)()
    before.CopyFrom(message)
    after.CopyFrom(message)
    for descriptor, _ in message.ListFields():
        (after if descriptor.number < number else before).ClearField(descriptor.name)
    out = io.BytesIO()  # grows in place: its bytes are not copied again by getvalue()
    out.write(before.SerializeToString())
    tag = _varint(number << 3 | _LENGTH_DELIMITED)
    for value in values:
        data = value.encode()
        out.write(tag)
        out.write(_varint(len(data)))
        out.write(data)
    out.write(after.SerializeToString())
    return EncodedReply(out.getvalue())


def passing_encoded(
    serialize: Callable[[Any], bytes] | None,
) -> Callable[[Any], bytes]:
    """A method handler's response serializer that sends an EncodedReply as it is and
    serializes anything else with `serialize` (none: the handler answers bytes)."""

    def serialize_reply(reply: Any) -> bytes:
        if isinstance(reply, EncodedReply):
            return reply.data
        return cast(bytes, reply) if serialize is None else serialize(reply)

    return serialize_reply
