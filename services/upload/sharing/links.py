"""Share links: the owner of an uploaded file hands out a URL that anyone may download the
file through, without an account, until it expires, is revoked, or has served its
downloads.

Rules:
- Only the owner of an UPLOADED file creates links to it; another user's file is
  NOT_FOUND, as everywhere. Each link has an expiry (default and maximum from settings),
  optionally a password (bcrypt, bounded cost and concurrency) and a download limit.
- The token is 256 random bits (`secrets.token_urlsafe(32)`), told once when the link is
  made; only its SHA-256 is stored, so the database cannot give links away.
- A link is usable while it has not expired, has downloads left and its file is still
  UPLOADED; deleting the file deletes its links (the foreign key cascades), revoking
  deletes the link. Every way a link can be unusable, a wrong password included, is the
  same NOT_FOUND (`LINK_NOT_FOUND`), so a refusal reveals nothing about which it was.
- Each download counts once, atomically in PostgreSQL (store.count_download).
- Guesses are limited per client address and per link (throttle.py)."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn, Protocol

import bcrypt

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.common.logs import log_fields

from ..models import FileStatus
from .store import LinkRow, ShareStore
from .throttle import GuessThrottle

log = logging.getLogger(__name__)

# Bytes of randomness in a token: 256 bits, 43 URL-safe characters.
TOKEN_BYTES = 32
# What a token looks like; anything else is refused without a lookup.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,128}")
MAX_PASSWORD_BYTES = 72  # bcrypt ignores anything longer: refused rather than truncated
MAX_DOWNLOADS = 1_000_000
LINK_NOT_FOUND = "this link does not exist, has expired, or was revoked"
NO_SUCH_FILE = "file not found"
NO_SUCH_LINK = "link not found"
BUSY_RETRY_AFTER_SECONDS = 1.0


class Presigner(Protocol):
    def presign_download(self, key: str, *, file_name: str, mime_type: str, ttl: int) -> str: ...


@dataclass(frozen=True)
class LinkInfo:
    link_id: str
    file_id: str
    created_at: datetime
    expires_at: datetime
    max_downloads: int | None
    download_count: int
    password_protected: bool


@dataclass(frozen=True)
class CreatedLink:
    link: LinkInfo
    # The secret the link's URL carries: told here only.
    token: str


@dataclass(frozen=True)
class ResolvedLink:
    url: str
    expires_in_seconds: int
    file_name: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: LinkRow) -> LinkInfo:
    return LinkInfo(
        link_id=str(row.link_id),
        file_id=str(row.file_id),
        created_at=row.created_at,
        expires_at=row.expires_at,
        max_downloads=row.max_downloads,
        download_count=row.download_count,
        password_protected=row.password_hash is not None,
    )


def _parse_id(value: str, what: str) -> uuid.UUID:
    if not value:
        raise InvalidArgument(f"{what} is required")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{what} must be a UUID") from None


class LinkPasswords:
    """bcrypt for link passwords: a fixed, bounded cost per check, and at most
    `max_pending` checks at once (each holds an RPC thread); one more is refused
    UNAVAILABLE with RetryInfo at once."""

    def __init__(self, rounds: int, max_pending: int) -> None:
        self._rounds = rounds
        self._places = threading.BoundedSemaphore(max_pending)

    def _admitted(self) -> None:
        if not self._places.acquire(blocking=False):
            raise Unavailable(
                "too many link passwords being checked; retry shortly",
                reason="SHARE_BUSY",
                retry_after=BUSY_RETRY_AFTER_SECONDS,
            )

    def hash(self, password: str) -> str:
        self._admitted()
        try:
            return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._rounds)).decode()
        finally:
            self._places.release()

    def verify(self, password: str, password_hash: str) -> bool:
        candidate = password.encode()
        if len(candidate) > MAX_PASSWORD_BYTES:
            return False
        self._admitted()
        try:
            return bcrypt.checkpw(candidate, password_hash.encode())
        finally:
            self._places.release()


class Sharing:
    def __init__(
        self,
        *,
        store: ShareStore,
        presigner: Presigner,
        throttle: GuessThrottle,
        passwords: LinkPasswords,
        default_ttl_seconds: int,
        max_ttl_seconds: int,
        download_url_ttl_seconds: int,
    ) -> None:
        self._store = store
        self._presigner = presigner
        self._throttle = throttle
        self._passwords = passwords
        self._default_ttl = default_ttl_seconds
        self._max_ttl = max_ttl_seconds
        self._url_ttl = download_url_ttl_seconds

    # -- the owner's side --------------------------------------------------------------

    def create_link(
        self,
        *,
        user_id: uuid.UUID,
        file_id: str,
        expires_in_seconds: int | None,
        password: str,
        max_downloads: int | None,
    ) -> CreatedLink:
        fid = _parse_id(file_id, "file_id")
        ttl = self._default_ttl if expires_in_seconds is None else expires_in_seconds
        if not 60 <= ttl <= self._max_ttl:
            raise InvalidArgument(
                f"expires_in_seconds must be between 60 and {self._max_ttl} "
                f"({self._max_ttl // 86400} days)"
            )
        if max_downloads is not None and not 1 <= max_downloads <= MAX_DOWNLOADS:
            raise InvalidArgument(f"max_downloads must be between 1 and {MAX_DOWNLOADS}")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise InvalidArgument(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
        self._require_uploaded(fid, user_id)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        row = self._store.insert(
            link_id=uuid.uuid4(),
            file_id=fid,
            user_id=user_id,
            token_hash=token_hash(token),
            password_hash=self._passwords.hash(password) if password else None,
            ttl_seconds=ttl,
            max_downloads=max_downloads,
        )
        if row is None:  # deleted (or failed) between the check and the insert
            raise NotFound(NO_SUCH_FILE)
        log.info("share link created", extra=log_fields(file_id=str(fid), link_id=str(row.link_id)))
        return CreatedLink(link=_info(row), token=token)

    def list_links(self, *, user_id: uuid.UUID, file_id: str) -> list[LinkInfo]:
        fid = _parse_id(file_id, "file_id")
        if self._store.uploaded_state(fid, user_id) is None:
            raise NotFound(NO_SUCH_FILE)
        return [_info(row) for row in self._store.links_of(fid, user_id)]

    def revoke_link(self, *, user_id: uuid.UUID, link_id: str) -> None:
        lid = _parse_id(link_id, "link_id")
        if not self._store.delete(lid, user_id):
            raise NotFound(NO_SUCH_LINK, reason="LINK_NOT_FOUND")
        log.info("share link revoked", extra=log_fields(link_id=str(lid)))

    def _require_uploaded(self, file_id: uuid.UUID, user_id: uuid.UUID) -> None:
        status = self._store.uploaded_state(file_id, user_id)
        if status is None:
            raise NotFound(NO_SUCH_FILE)
        if status is not FileStatus.UPLOADED:
            raise FailedPrecondition("only an uploaded file can be shared", reason="NOT_UPLOADED")

    # -- a stranger's side ---------------------------------------------------------------

    def resolve(self, *, token: str, password: str, client_address: str) -> ResolvedLink:
        """A download URL for whoever holds the token (and the password, if the link has
        one). Every refusal but PASSWORD_REQUIRED and the limits is LINK_NOT_FOUND."""
        self._throttle.check_address(client_address)
        row = self._store.usable_link(token_hash(token)) if TOKEN_PATTERN.fullmatch(token) else None
        if row is None:
            self._refuse(client_address)
        if row.password_hash is not None:
            if not password:
                raise FailedPrecondition("this link needs a password", reason="PASSWORD_REQUIRED")
            attempt = self._throttle.admit_password(row.link_id, client_address)
            if not self._passwords.verify(password, row.password_hash):
                self._refuse(client_address)
            self._throttle.password_succeeded(attempt)
        shared = self._store.count_download(row.link_id)
        if shared is None:  # expired, exhausted, revoked or deleted meanwhile
            self._refuse(client_address)
        url = self._presigner.presign_download(
            shared.s3_key, file_name=shared.file_name, mime_type=shared.mime_type, ttl=self._url_ttl
        )
        log.info("share link used", extra=log_fields(link_id=str(row.link_id)))
        return ResolvedLink(url=url, expires_in_seconds=self._url_ttl, file_name=shared.file_name)

    def _refuse(self, client_address: str) -> NoReturn:
        self._throttle.failed(client_address)
        raise NotFound(LINK_NOT_FOUND, reason="LINK_NOT_FOUND")
