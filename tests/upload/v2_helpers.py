"""What a v2 upload client does, for the tests: create an upload, ask for URLs of a batch
of parts with their checksums, PUT each part with the signed checksum header, record it,
complete with the recorded parts."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from dataclasses import dataclass, field

import httpx

from dropfile.upload.v1 import upload_pb2

SHA256 = upload_pb2.CHECKSUM_ALGORITHM_SHA256
CRC32C = upload_pb2.CHECKSUM_ALGORITHM_CRC32C


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c_b64(data: bytes) -> str:
    """CRC32C (Castagnoli), as S3 takes it: the big-endian 4 bytes, base64."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC32C_TABLE[(crc ^ byte) & 0xFF]
    return base64.b64encode((crc ^ 0xFFFFFFFF).to_bytes(4, "big")).decode()


@dataclass
class V2Upload:
    data: bytes
    reply: upload_pb2.CreateUploadResponse
    etags: dict[int, str] = field(default_factory=dict)

    @property
    def file_id(self) -> str:
        return self.reply.file_id

    @property
    def upload_id(self) -> str:
        return self.reply.upload_id

    def part(self, number: int) -> bytes:
        size = self.reply.part_size
        return self.data[(number - 1) * size : number * size]

    def checksum(self, number: int) -> str:
        if self.reply.checksum_algorithm == CRC32C:
            return crc32c_b64(self.part(number))
        return sha256_b64(self.part(number))


def create(
    api,
    user,
    data: bytes | int,
    *,
    name: str = "data.bin",
    sha256: str = "",
    algorithm: int = SHA256,
    file_id: str | None = None,
) -> V2Upload:
    if isinstance(data, int):
        data = os.urandom(data)
    reply = api.CreateUpload(
        upload_pb2.CreateUploadRequest(
            file_id=file_id if file_id is not None else str(uuid.uuid4()),
            file_name=name,
            file_size=len(data),
            checksum_algorithm=algorithm,
            sha256=sha256,
        ),
        metadata=user.metadata,
    )
    return V2Upload(data=data, reply=reply)


def part_urls(
    api, user, upload: V2Upload, first: int, last: int, checksums: list[str] | None = None
) -> dict[int, upload_pb2.PartUrl]:
    if checksums is None:
        checksums = [upload.checksum(n) for n in range(first, last + 1)]
    reply = api.GetPartUrls(
        upload_pb2.GetPartUrlsRequest(
            file_id=upload.file_id,
            first_part_number=first,
            last_part_number=last,
            checksums=checksums,
        ),
        metadata=user.metadata,
    )
    return {part.part_number: part for part in reply.parts}


def put(
    part: upload_pb2.PartUrl, body: bytes, client: httpx.Client | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/octet-stream", **dict(part.headers)}
    return (client or httpx).put(part.url, content=body, headers=headers, timeout=60)


def send_parts(
    api,
    user,
    upload: V2Upload,
    numbers,
    *,
    record: bool = True,
    client: httpx.Client | None = None,
    batch: int = 1000,
) -> None:
    """PUTs (and records) the given parts, asking for URLs in batches of consecutive
    numbers."""
    numbers = sorted(numbers)
    while numbers:
        run = [numbers[0]]
        while len(run) < batch and len(run) < len(numbers) and numbers[len(run)] == run[-1] + 1:
            run.append(numbers[len(run)])
        numbers = numbers[len(run) :]
        urls = part_urls(api, user, upload, run[0], run[-1])
        for number in run:
            response = put(urls[number], upload.part(number), client)
            assert response.status_code == 200, response.text
            upload.etags[number] = response.headers["ETag"].strip('"')
            if record:
                api.RecordPart(
                    upload_pb2.RecordPartRequest(
                        file_id=upload.file_id,
                        chunk_index=number - 1,
                        size=len(upload.part(number)),
                        etag=upload.etags[number],
                        checksum=upload.checksum(number),
                    ),
                    metadata=user.metadata,
                )


def complete(api, user, upload: V2Upload, *, sha256: str = "") -> None:
    api.CompleteUpload(
        upload_pb2.CompleteUploadRequest(
            file_id=upload.file_id, use_recorded_parts=True, sha256=sha256
        ),
        metadata=user.metadata,
    )


def get_upload(api, user, file_id: str) -> upload_pb2.GetUploadResponse:
    return api.GetUpload(upload_pb2.GetUploadRequest(file_id=file_id), metadata=user.metadata)
