"""A reply with a long list written straight to bytes (gateway/json_replies.py)
is byte for byte what FastAPI sends for the same content through the route's model."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from dropfile.upload.v1 import upload_pb2
from gateway.json_replies import json_reply
from gateway.schemas import UploadUrlsReply
from gateway.schemas_v2 import PartUrlsReply

URLS = [
    f"https://s3.example.com/b/k?partNumber={n}&X-Amz-Signature={n:064x}" for n in range(1, 601)
]
ODD = [
    'quote " backslash \\ slash /',
    "tab\t newline\n control \x01 del \x7f",
    "ü é ☃ 𝄞 \u2028",
    "",
]


def same_as_fastapis(app: FastAPI) -> httpx.Response:
    """GET /direct, once its status, headers and bytes are checked to be GET /fastapi's."""

    async def fetch_both():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as client:
            return await client.get("/fastapi"), await client.get("/direct")

    expected, got = asyncio.run(fetch_both())
    assert got.status_code == expected.status_code == 200
    assert got.content == expected.content
    assert got.headers == expected.headers
    return got


@pytest.mark.parametrize("urls", [URLS, ODD, [], ["one"]])
def test_the_body_and_headers_are_fastapis(urls):
    reply = upload_pb2.InitiateUploadResponse(upload_id='up"1', part_urls=urls)
    app = FastAPI()

    @app.get("/fastapi", response_model=UploadUrlsReply)
    def through_the_model():
        return {
            "success": True,
            "presignedUrls": list(reply.part_urls),
            "uploadId": reply.upload_id,
        }

    @app.get("/direct", response_model=UploadUrlsReply)
    def direct():
        return json_reply(
            {"success": True, "presignedUrls": reply.part_urls, "uploadId": reply.upload_id},
            long_list="presignedUrls",
        )

    got = same_as_fastapis(app)
    assert got.json()["presignedUrls"] == urls


@pytest.mark.parametrize("count", [0, 1, 300])
def test_part_url_entries_are_fastapis_too(count):
    reply = upload_pb2.GetPartUrlsResponse(expires_in_seconds=3600)
    for number in range(1, count + 1):
        part = reply.parts.add(part_number=number, url=URLS[number % len(URLS)] + ODD[number % 3])
        part.headers["x-amz-checksum-sha256"] = f"{number:043d}="
    app = FastAPI()

    def entries():
        return (
            {"partNumber": part.part_number, "url": part.url, "headers": dict(part.headers)}
            for part in reply.parts
        )

    @app.get("/fastapi", response_model=PartUrlsReply)
    def through_the_model():
        return {"parts": list(entries()), "expiresIn": reply.expires_in_seconds}

    @app.get("/direct", response_model=PartUrlsReply)
    def direct():
        return json_reply(
            {"parts": entries(), "expiresIn": reply.expires_in_seconds}, long_list="parts"
        )

    got = same_as_fastapis(app)
    assert len(got.json()["parts"]) == count
