"""Share links and the quota, as the SDK sees them: `DropfileClient.create_link`,
`links`, `revoke_link` and `quota` call these with the client's gateway.

    created = client.create_link(file_id, expires_in=24 * 3600, password="s3cret")
    print(created.url)            # shown once: the server keeps only a hash of it
    for link in client.links(file_id):
        print(link.link_id, link.download_count, link.state)
    client.revoke_link(created.link_id)
    print(client.quota().used_bytes)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .api import Gateway
from .errors import DropfileError


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _limit(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class CreatedLink:
    link_id: str
    # `<server>/s/<token>`: the only time the link is told.
    url: str
    expires_at: datetime | None
    max_downloads: int | None
    password_protected: bool

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CreatedLink:
        return cls(
            link_id=str(body.get("linkId", "")),
            url=str(body.get("url", "")),
            expires_at=_moment(body.get("expiresAt")),
            max_downloads=_limit(body.get("maxDownloads")),
            password_protected=bool(body.get("passwordProtected")),
        )


@dataclass(frozen=True)
class ShareLink:
    link_id: str
    file_id: str
    created_at: datetime | None
    expires_at: datetime | None
    max_downloads: int | None  # None: unlimited
    download_count: int
    password_protected: bool

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> ShareLink:
        return cls(
            link_id=str(entry.get("linkId", "")),
            file_id=str(entry.get("fileId", "")),
            created_at=_moment(entry.get("createdAt")),
            expires_at=_moment(entry.get("expiresAt")),
            max_downloads=_limit(entry.get("maxDownloads")),
            download_count=int(entry.get("downloadCount", 0)),
            password_protected=bool(entry.get("passwordProtected")),
        )

    def state(self, now: datetime | None = None) -> str:
        """ "active", "expired" or "used up" (its downloads spent)."""
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        if self.max_downloads is not None and self.download_count >= self.max_downloads:
            return "used up"
        return "active"


@dataclass(frozen=True)
class Quota:
    used_bytes: int  # uploaded files and uploads in progress
    uploading_bytes: int  # of used_bytes, uploads in progress
    limit_bytes: int | None  # None: unlimited

    @property
    def free_bytes(self) -> int | None:
        return None if self.limit_bytes is None else max(0, self.limit_bytes - self.used_bytes)


def create_link(
    gateway: Gateway,
    file_id: str,
    *,
    expires_in: int | None = None,
    password: str | None = None,
    max_downloads: int | None = None,
) -> CreatedLink:
    body: dict[str, Any] = {}
    if expires_in is not None:
        body["expiresInSeconds"] = expires_in
    if password:
        body["password"] = password
    if max_downloads is not None:
        body["maxDownloads"] = max_downloads
    reply = gateway.call("POST", f"/api/v2/files/{quote(file_id, safe='')}/links", json=body)
    return CreatedLink.from_json(reply)


def links(gateway: Gateway, file_id: str) -> list[ShareLink]:
    reply = gateway.call("GET", f"/api/v2/files/{quote(file_id, safe='')}/links", idempotent=True)
    entries = reply.get("links")
    if not isinstance(entries, list):
        raise DropfileError("the server's reply about the links is malformed")
    return [ShareLink.from_json(entry) for entry in entries if isinstance(entry, dict)]


def revoke_link(gateway: Gateway, link_id: str) -> None:
    # Revoking twice is harmless, so a lost answer is retried.
    gateway.call("DELETE", f"/api/v2/links/{quote(link_id, safe='')}", idempotent=True)


def quota(gateway: Gateway) -> Quota:
    reply = gateway.call("GET", "/api/v2/quota", idempotent=True)
    return Quota(
        used_bytes=int(reply.get("usedBytes", 0)),
        uploading_bytes=int(reply.get("uploadingBytes", 0)),
        limit_bytes=_limit(reply.get("limitBytes")),
    )
