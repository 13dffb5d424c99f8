"""What the bench needs from the REST API: accounts, and requests prepared byte for byte for
the load generator."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

from tools.processes import run_json_module

from .stack import ROOT

MIB = 1024 * 1024
PART_SIZE = 5 * MIB


@dataclass
class Account:
    email: str
    password: str
    access_token: str


def sign_up(gateway: str, label: str) -> Account:
    email = f"{label}-{secrets.token_hex(4)}@bench.example.com"
    password = secrets.token_urlsafe(18)
    with httpx.Client(base_url=gateway, timeout=60) as client:
        reply = client.post(
            "/api/auth/signup",
            json={
                "user": {"email": email, "name": label, "password": password},
                "rememberMe": True,
            },
        )
        reply.raise_for_status()
        return Account(email, password, client.cookies["access_token"])


def api_client(gateway: str, account: Account) -> httpx.Client:
    client = httpx.Client(base_url=gateway, timeout=120)
    client.cookies.set("access_token", account.access_token)
    return client


def initiate(client: httpx.Client, size: int, name: str = "bench.bin") -> tuple[str, dict]:
    """Starts a v1 upload; returns (file_id, reply)."""
    file_id = str(uuid.uuid4())
    reply = client.post(
        "/api/files/get-upload-urls",
        json={
            "file_id": file_id,
            "file_name": name,
            "file_type": "application/octet-stream",
            "file_size": str(size),
        },
    )
    reply.raise_for_status()
    return file_id, reply.json()


def abort(client: httpx.Client, file_id: str, upload_id: str) -> None:
    client.post(
        "/api/files/abort-upload", json={"uploadId": upload_id, "file_id": file_id}
    ).raise_for_status()


def raw_post(url: str, path: str, body: dict, *, cookie: str | None = None) -> str:
    """An HTTP/1.1 keep-alive POST with a JSON body, as text for the load generator."""
    parsed = urlparse(url)
    payload = json.dumps(body, separators=(",", ":"))
    headers = [
        f"POST {path} HTTP/1.1",
        f"Host: {parsed.hostname}:{parsed.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload.encode())}",
    ]
    if cookie:
        headers.append(f"Cookie: {cookie}")
    return "\r\n".join(headers) + "\r\n\r\n" + payload


def record_chunk_bodies(file_ids: list[str], parts: int) -> list[dict]:
    """record-chunk bodies spread over files and part indexes (full 5 MiB parts)."""
    return [
        {
            "file_id": file_ids[i % len(file_ids)],
            "chunk_index": (i // len(file_ids)) % parts,
            "size": str(PART_SIZE),
            "etag": "d41d8cd98f00b204e9800998ecf8427e",
        }
        for i in range(len(file_ids) * parts)
    ]


def run_load(workloads: list[dict], timeout: float) -> dict:
    """Runs the load generator in its own process; returns its per-workload results."""
    return run_json_module("bench.loadgen", {"workloads": workloads}, cwd=ROOT, timeout=timeout)


def http_workload(
    name: str,
    url: str,
    requests: list[str],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    rate: float | None = None,
) -> dict:
    """`rate`: requests per second per connection (paced); back to back when None."""
    parsed = urlparse(url)
    return {
        "name": name,
        "kind": "http",
        "host": parsed.hostname,
        "port": parsed.port,
        "requests": requests,
        "concurrency": concurrency,
        "duration": duration,
        "warmup": warmup,
        "rate": rate,
    }
