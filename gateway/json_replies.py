"""JSON replies with one long list (v1's 10,000 presigned URLs, ~5 MB; v2's part URLs),
written straight to bytes.

FastAPI's way with a dict (validated against the response model, then dumped by pydantic)
holds the list several times beside the gRPC reply it comes from: a list of Python strings,
the validated model's, and the body. `json_reply` takes the strings from the gRPC reply a
batch at a time into the body, so the body is the only whole copy. pydantic dumps every
part, so the bytes and headers are those FastAPI sends for the same content (compact JSON,
UTF-8, `application/json`); the route keeps its response model for the API's
documentation."""

from __future__ import annotations

import io
from itertools import islice
from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

# Items dumped per call: few enough to stay small (~128 KB of URLs), enough that the loop
# costs nothing beside the dumping.
_BATCH = 256


def json_reply(content: dict[str, Any], *, long_list: str) -> Response:
    """`content` as a JSON object, its members in order; the member named `long_list`, an
    iterable of JSON values (a protobuf repeated field, a generator), is dumped a batch at a
    time and never made into a list of them all."""
    body = io.BytesIO()  # grows in place: getvalue() does not copy it again
    body.write(b"{")
    for position, (name, value) in enumerate(content.items()):
        if position:
            body.write(b",")
        body.write(to_json(name) + b":")
        if name != long_list:
            body.write(to_json(value))
            continue
        body.write(b"[")
        items, separator = iter(value), b""
        while batch := list(islice(items, _BATCH)):
            body.write(separator)
            body.write(memoryview(to_json(batch))[1:-1])  # the items, without [ and ]
            separator = b","
        body.write(b"]")
    body.write(b"}")
    return Response(body.getvalue(), media_type="application/json")
