"""The `/api/v2` upload routes over real HTTP against the real services: create, URLs in
batches signed for each part's checksum, record, resume, complete, the file with its
whole-file checksum, the quota (413 when exceeded), and the OpenAPI document. v1's
get-upload-urls keeps its exact shape."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid

import httpx
import pytest

from .conftest import listed, wait_until_uploaded

MIB = 1024 * 1024
TIB = 1024**4


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def create(client: httpx.Client, size: int, **extra) -> httpx.Response:
    return client.post("/api/v2/files", json={"fileName": "v2.bin", "size": size, **extra})


def send(
    client: httpx.Client, file_id: str, data: bytes, part_size: int, numbers: list[int]
) -> None:
    pieces = {n: data[(n - 1) * part_size : n * part_size] for n in numbers}
    urls = client.post(
        f"/api/v2/files/{file_id}/part-urls",
        json={
            "first_part": numbers[0],
            "last_part": numbers[-1],
            "checksums": [b64_sha256(pieces[n]) for n in numbers],
        },
    )
    assert urls.status_code == 200, urls.text
    for entry in urls.json()["parts"]:
        number = entry["partNumber"]
        assert entry["headers"] == {"x-amz-checksum-sha256": b64_sha256(pieces[number])}
        stored = httpx.put(
            entry["url"],
            content=pieces[number],
            timeout=60,
            headers={"Content-Type": "application/octet-stream", **entry["headers"]},
        )
        assert stored.status_code == 200, stored.text
        recorded = client.post(
            f"/api/v2/files/{file_id}/parts",
            json={
                "partNumber": number,
                "size": len(pieces[number]),
                "etag": stored.headers["ETag"],
                "checksum": b64_sha256(pieces[number]),
            },
        )
        assert recorded.status_code == 200, recorded.text
        assert recorded.json() == {"partNumber": number}


@pytest.mark.slow
def test_a_v2_upload_from_start_to_download(signed_in):
    client = signed_in()
    data = os.urandom(2 * 5 * MIB + 99)
    digest = hashlib.sha256(data).hexdigest()
    started = create(client, len(data), mimeType="application/x-test")
    assert started.status_code == 201, started.text
    body = started.json()
    assert set(body) == {"fileId", "uploadId", "partSize", "partCount", "checksumAlgorithm"}
    assert (body["partSize"], body["partCount"], body["checksumAlgorithm"]) == (
        5 * MIB,
        3,
        "SHA256",
    )
    file_id = body["fileId"]

    send(client, file_id, data, body["partSize"], [1, 2])
    upload = client.get(f"/api/v2/files/{file_id}/upload")
    assert upload.status_code == 200, upload.text
    state = upload.json()
    assert state["state"] == "RECEIVING_PARTS"
    assert (state["uploadId"], state["partCount"]) == (body["uploadId"], 3)
    assert [p["partNumber"] for p in state["storedParts"]] == [1, 2]
    assert state["storedParts"][0]["checksum"] == b64_sha256(data[: 5 * MIB])
    assert state["file"]["status"] == "UPLOADING" and state["file"]["sha256"] is None

    send(client, file_id, data, body["partSize"], [3])
    done = client.post(f"/api/v2/files/{file_id}/complete", json={"sha256": digest})
    assert done.status_code == 200, done.text
    assert done.json() == {"fileId": file_id, "state": "COMPLETED"}

    entry = wait_until_uploaded(client, file_id)
    assert "sha256" not in entry  # v1's list keeps its exact shape
    file = client.get(f"/api/v2/files/{file_id}").json()["file"]
    assert (file["sha256"], file["size"], file["status"]) == (digest, len(data), "UPLOADED")
    url = client.post("/api/files/get-download-url", json={"s3_key": file["s3Key"]})
    assert httpx.get(url.json()["url"], timeout=60).content == data


def test_a_5_tib_upload_starts_within_an_unlimited_quota_only(signed_in):
    """The test stack's quota is the default 100 GiB: 5 TiB is refused with 413 before
    storage is asked for anything; the 5 TiB arithmetic itself is in the upload tests."""
    client = signed_in()
    refused = create(client, 5 * TIB)
    assert refused.status_code == 413
    assert set(refused.json()) == {"error", "code"}
    assert refused.json()["code"] == "QUOTA_EXCEEDED"
    assert "storage quota exceeded" in refused.json()["error"]
    too_big = create(client, 5 * TIB + 1)
    assert too_big.status_code == 400 and "exceeds the limit" in too_big.json()["error"]


def test_the_quota_route_and_v1_413(signed_in):
    client = signed_in()
    quota = client.get("/api/v2/quota")
    assert quota.status_code == 200
    assert quota.json() == {"usedBytes": 0, "uploadingBytes": 0, "limitBytes": 100 * 1024 * MIB}
    # A declared 99.5 GiB (nothing sent) leaves less room than v1's 1 GiB file needs.
    assert create(client, 199 * 512 * MIB).status_code == 201
    assert client.get("/api/v2/quota").json()["usedBytes"] == 199 * 512 * MIB
    v1 = client.post(
        "/api/files/get-upload-urls",
        json={
            "file_id": str(uuid.uuid4()),
            "file_name": "big",
            "file_type": "",
            "file_size": str(1024 * MIB),
        },
    )
    assert v1.status_code == 413
    assert v1.json()["success"] is False and "quota" in v1.json()["error"]


def test_v1_get_upload_urls_keeps_its_exact_shape(signed_in):
    client = signed_in()
    reply = client.post(
        "/api/files/get-upload-urls",
        json={
            "file_id": str(uuid.uuid4()),
            "file_name": "a",
            "file_type": "",
            "file_size": str(11 * MIB),
        },
    )
    assert reply.status_code == 200
    assert set(reply.json()) == {"success", "presignedUrls", "uploadId"}
    assert len(reply.json()["presignedUrls"]) == 3  # every URL at once, 5 MiB parts


@pytest.mark.parametrize(
    "body,status,message",
    [
        ({"fileName": "x"}, 400, "missing fields: size"),
        ({"fileName": "x", "size": "12"}, 400, "size"),
        ({"fileName": "x", "size": -1}, 400, "size"),
        ({"fileName": "x", "size": 1, "checksumAlgorithm": "MD5"}, 400, "checksumAlgorithm"),
        ({"fileName": "x", "size": 1, "fileId": "nope"}, 400, "fileId must be a UUID"),
        ({"fileName": "x", "size": 1, "sha256": "abc"}, 400, "sha256 must be 64 hex"),
        ({"fileName": "", "size": 1}, 400, "fileName must have a visible character"),
        ({"fileName": " \u202e", "size": 1}, 400, "fileName must have a visible character"),
        ({"fileName": "x", "size": 1, "mimeType": "pdf"}, 400, "mimeType must look like"),
        ({"fileName": "x", "size": 1, "extra": 1}, 400, "unknown fields: extra"),
    ],
)
def test_bad_creations_are_400_naming_the_problem(signed_in, body, status, message):
    response = signed_in().post("/api/v2/files", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_another_users_upload_is_404_and_signing_in_is_required(signed_in, api_client):
    alice, bob = signed_in(), signed_in()
    file_id = create(alice, 10).json()["fileId"]
    for path in (f"/api/v2/files/{file_id}", f"/api/v2/files/{file_id}/upload"):
        assert bob.get(path).status_code == 404
        assert bob.get(path).json() == {"error": "file not found", "code": "NOT_FOUND"}
        assert api_client().get(path).status_code == 401
    assert bob.post(f"/api/v2/files/{file_id}/complete", json={}).status_code == 404
    assert (
        bob.post(
            f"/api/v2/files/{file_id}/parts", json={"partNumber": 1, "size": 10, "etag": "e"}
        ).status_code
        == 404
    )
    assert api_client().get("/api/v2/quota").status_code == 401
    assert listed(alice, file_id)["status"] == "UPLOADING"


def test_completing_with_parts_missing_is_409(signed_in):
    client = signed_in()
    file_id = create(client, 10).json()["fileId"]
    response = client.post(f"/api/v2/files/{file_id}/complete", json={})
    assert response.status_code == 409
    assert "parts not recorded yet: 1" in response.json()["error"]


def test_the_v2_routes_are_documented(api_client):
    paths = api_client().get("/openapi.json").json()["paths"]
    for path, method in [
        ("/api/v2/files", "post"),
        ("/api/v2/files/{file_id}", "get"),
        ("/api/v2/files/{file_id}/upload", "get"),
        ("/api/v2/files/{file_id}/parts", "post"),
        ("/api/v2/files/{file_id}/parts/batch", "post"),
        ("/api/v2/files/{file_id}/complete", "post"),
        ("/api/v2/quota", "get"),
    ]:
        operation = paths[path][method]
        statuses = set(operation["responses"])
        assert "422" not in statuses
        # 401 for every one (they act for the signed-in user); 400 where there is a body or
        # a file id to check; 408 and 413 where a body is read.
        assert {"401", "500", "503", "504"} <= statuses, path
        assert ("400" in statuses) == (path != "/api/v2/quota"), path
        assert ({"408", "413"} <= statuses) == (method == "post"), path


def _store_parts(
    client: httpx.Client, file_id: str, data: bytes, part_size: int, numbers: list[int]
) -> list[dict]:
    """PUTs the parts to storage; their record entries, as POST .../parts takes them."""
    pieces = {n: data[(n - 1) * part_size : n * part_size] for n in numbers}
    urls = client.post(
        f"/api/v2/files/{file_id}/part-urls",
        json={
            "first_part": numbers[0],
            "last_part": numbers[-1],
            "checksums": [b64_sha256(pieces[n]) for n in numbers],
        },
    ).json()["parts"]
    entries = []
    for entry in urls:
        number = entry["partNumber"]
        stored = httpx.put(
            entry["url"],
            content=pieces[number],
            timeout=60,
            headers={"Content-Type": "application/octet-stream", **entry["headers"]},
        )
        assert stored.status_code == 200, stored.text
        entries.append(
            {
                "partNumber": number,
                "size": len(pieces[number]),
                "etag": stored.headers["ETag"],
                "checksum": b64_sha256(pieces[number]),
            }
        )
    return entries


def test_parts_recorded_in_one_batch_complete_the_upload(signed_in):
    client = signed_in()
    data = os.urandom(2 * 5 * MIB + 7)
    body = create(client, len(data)).json()
    file_id = body["fileId"]
    entries = _store_parts(client, file_id, data, body["partSize"], [1, 2, 3])
    recorded = client.post(
        f"/api/v2/files/{file_id}/parts/batch", json={"parts": [entries[2], entries[0], entries[1]]}
    )
    assert recorded.status_code == 200, recorded.text
    assert recorded.json() == {"partNumbers": [3, 1, 2]}
    # The same batch again (a client's retry) changes nothing.
    again = client.post(f"/api/v2/files/{file_id}/parts/batch", json={"parts": entries})
    assert again.status_code == 200, again.text
    done = client.post(f"/api/v2/files/{file_id}/complete", json={})
    assert done.status_code == 200, done.text
    entry = wait_until_uploaded(client, file_id)
    assert entry["size"] == len(data)


def test_a_refused_part_of_a_batch_is_named_and_the_others_are_recorded(signed_in):
    client = signed_in()
    data = os.urandom(5 * MIB + 7)
    body = create(client, len(data)).json()
    file_id = body["fileId"]
    entries = _store_parts(client, file_id, data, body["partSize"], [1, 2])
    wrong_size = {**entries[1], "size": 6}
    response = client.post(
        f"/api/v2/files/{file_id}/parts/batch", json={"parts": [entries[0], wrong_size]}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("part 2: ")
    # Part 1 was recorded all the same: only part 2 is still missing.
    done = client.post(f"/api/v2/files/{file_id}/complete", json={})
    assert done.status_code == 409
    assert "parts not recorded yet: 2 " in done.json()["error"]
    assert done.json()["code"] == "PART_NOT_RECORDED"


def test_batches_are_checked_like_single_records(signed_in):
    alice, bob = signed_in(), signed_in()
    file_id = create(alice, 10).json()["fileId"]
    part = {"partNumber": 1, "size": 10, "etag": "e"}
    batch = f"/api/v2/files/{file_id}/parts/batch"
    refused = bob.post(batch, json={"parts": [part]})
    assert (refused.status_code, refused.json()) == (
        404,
        {"error": "part 1: file not found", "code": "NOT_FOUND"},
    )
    for bad, message in [
        ({"parts": []}, "parts"),
        ({"parts": [part] * 101}, "parts"),
        ({"parts": [{**part, "partNumber": 0}]}, "parts[0].partNumber"),
        ({"part": part}, "missing fields: parts"),
    ]:
        response = alice.post(batch, json=bad)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]
    assert listed(alice, file_id)["status"] == "UPLOADING"


def test_a_single_put_upload_over_http(signed_in):
    """Created with its checksum: the reply carries the one PUT's URL; completing confirms
    the file at once. The new reply fields appear only when the client opted in."""
    client = signed_in()
    data = os.urandom(MIB + 5)
    started = create(client, len(data), singlePut=True, partChecksum=b64_sha256(data))
    assert started.status_code == 201, started.text
    body = started.json()
    assert set(body) == {
        "fileId",
        "uploadId",
        "partSize",
        "partCount",
        "checksumAlgorithm",
        "singlePut",
        "putUrl",
        "expiresIn",
    }
    assert (body["singlePut"], body["partCount"], body["putUrl"]["partNumber"]) == (True, 1, 1)
    assert body["putUrl"]["headers"] == {"x-amz-checksum-sha256": b64_sha256(data)}
    file_id = body["fileId"]
    state = client.get(f"/api/v2/files/{file_id}/upload").json()
    assert (state["singlePut"], state["storedParts"]) == (True, [])
    stored = httpx.put(
        body["putUrl"]["url"],
        content=data,
        timeout=60,
        headers={"Content-Type": "application/octet-stream", **body["putUrl"]["headers"]},
    )
    assert stored.status_code == 200, stored.text
    done = client.post(f"/api/v2/files/{file_id}/complete", json={"uploadId": body["uploadId"]})
    assert done.status_code == 200, done.text
    file = client.get(f"/api/v2/files/{file_id}").json()["file"]
    assert file["status"] == "UPLOADED"  # no waiting for storage's event
    url = client.post("/api/files/get-download-url", json={"s3_key": file["s3Key"]})
    assert httpx.get(url.json()["url"], timeout=60).content == data

    # Without the checksum: no URL in the reply (part-urls gives it); without opting in,
    # the replies are as they always were.
    plain = create(client, 100, singlePut=True).json()
    assert "putUrl" not in plain and plain["singlePut"] is True
    multipart = create(client, 100).json()
    assert "singlePut" not in multipart
    assert "singlePut" not in client.get(f"/api/v2/files/{multipart['fileId']}/upload").json()


def test_single_put_refusals(signed_in):
    client = signed_in()
    too_big = create(client, 5 * MIB + 1, singlePut=True)
    assert too_big.status_code == 400
    assert too_big.json() == {
        "error": "file_size 5242881 is over the single-PUT limit of 5242880 bytes (5 MiB); "
        "upload it in parts",
        "code": "SINGLE_PUT_TOO_LARGE",
    }
    assert create(client, 5 * MIB, singlePut=True).status_code == 201
    no_opt_in = create(client, 10, partChecksum=b64_sha256(b"0123456789"))
    assert no_opt_in.status_code == 400
    assert no_opt_in.json()["error"] == "part_checksum is for single-PUT uploads only"
    not_a_bool = create(client, 10, singlePut="yes")
    assert not_a_bool.status_code == 400 and not_a_bool.json()["code"] == "INVALID_REQUEST"

    body = create(client, 10, singlePut=True).json()
    early = client.post(f"/api/v2/files/{body['fileId']}/complete", json={})
    assert early.status_code == 409 and early.json()["code"] == "PART_NOT_STORED"
    other = signed_in()
    assert other.post(f"/api/v2/files/{body['fileId']}/complete", json={}).status_code == 404
