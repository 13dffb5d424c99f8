"""DropfileClient: the SDK's one entry point, and what the CLI is built on.

    from dropfile_client import DropfileClient, ApiError

    with DropfileClient() as client:           # server and session as the CLI finds them
        client.login("ada@example.com", "correct horse battery")
        info = client.upload("big.iso", on_progress=lambda done, total: ...)
        for f in client.list():
            print(f.file_id, f.name, f.status)
        client.download(info.file_id, "copy.iso")
        client.delete(info.file_id)

Uploads use the v2 API: the server sizes the parts, URLs come in batches signed for each
part's checksum (CRC32C by default, or SHA-256: storage refuses altered bytes), and the
whole file's SHA-256 is recorded and checked after every download. An upload that stopped
without being aborted (a crash, a kill, a server that went away) is resumed when the same,
unchanged file is uploaded again: only the parts storage does not hold yet are sent, with
the checksum algorithm the upload was created with.

Every call worth repeating is retried while it fails in a way time may lift (the server
down, overloaded or failing, a timeout, a dropped connection; retry.py), and an upload
whose retries run out is kept, not aborted (UploadFailed.resumable): uploading the file
again resumes it. Only Ctrl-C, or a server that refuses the upload for good, aborts it.

Every method raises a DropfileError (ApiError for the server's refusals, with the
`code` to branch on, `message` and `status`); an interrupted upload raises
UploadInterrupted (a KeyboardInterrupt)."""

from __future__ import annotations

import base64
import builtins
import json
import logging
import mimetypes
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from . import codes, sharing
from .api import Gateway
from .checksums import DEFAULT_PART_CHECKSUM, PART_CHECKSUMS, FileHasher, part_checksum_algorithm
from .config import resolve_server, session_path
from .download import fetch_to, target_path
from .errors import (
    ApiError,
    ConfirmationTimeout,
    DropfileError,
    NotSignedIn,
    ServerUnreachable,
    StorageError,
    UploadFailed,
    UploadInterrupted,
)
from .parts import layout
from .range_download import DEFAULT_RANGE_SIZE
from .resume import ResumeStore, upload_key
from .retry import RetryPolicy
from .session import ACCESS_TOKEN, Session, SessionStore
from .sharing import CreatedLink, Quota, ShareLink
from .storage import storage_client
from .uploader import (
    ByteCounter,
    PartTarget,
    PartUploader,
    PartUrlBook,
    ProgressCallback,
    StoredPart,
)

log = logging.getLogger("dropfile_client")
RESUME_FILE = "uploads.json"

DEFAULT_PARALLEL = 4
# Files up to this size go up in one PUT (the server's single-PUT limit, 5 MiB): one
# request to storage instead of a multipart upload's three, and none to record parts.
SINGLE_PUT_MAX_SIZE = 5 * 1024 * 1024
# Files per page of GET /api/v2/files: the server's default, and its largest page.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_WAIT_TIMEOUT = 120.0
# How long an interrupted or failed upload waits for its part threads before aborting.
STOP_GRACE_SECONDS = 2.0
# An abort is retried briefly: it runs when the user is waiting to get their prompt back.
ABORT_RETRY = RetryPolicy(attempts=3, max_delay=2.0, deadline=10.0)


@dataclass(frozen=True)
class FileInfo:
    file_id: str
    name: str
    mime_type: str
    size: int
    s3_key: str
    status: str  # "UPLOADING", "UPLOADED" or "FAILED"
    created_at: datetime | None
    # The whole file's SHA-256 (hex) as its uploader declared it, when known.
    sha256: str | None = None

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> FileInfo:
        created = entry.get("createdAt")
        try:
            created_at = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        except ValueError:
            created_at = None
        return cls(
            file_id=str(entry.get("fileId", "")),
            name=str(entry.get("fileName", "")),
            mime_type=str(entry.get("mimeType", "")),
            size=int(entry.get("size", 0)),
            s3_key=str(entry.get("s3Key", "")),
            status=str(entry.get("status", "")),
            created_at=created_at,
            sha256=entry["sha256"] if isinstance(entry.get("sha256"), str) else None,
        )


@dataclass(frozen=True)
class FilePage:
    """One page of a file list, and the token of the next (None on the last page)."""

    files: list[FileInfo]
    next_page_token: str | None


@dataclass(frozen=True)
class UploadPlan:
    """An upload to carry out: new, or resumed with the parts storage already holds."""

    file_id: str
    upload_id: str
    part_size: int
    part_count: int
    stored: dict[int, StoredPart]
    # The part checksum the upload was created with (a resumed one keeps it).
    checksum_algorithm: str = DEFAULT_PART_CHECKSUM
    finished: bool = False  # completed already: nothing left to send
    # One PUT of the whole file (no multipart upload), and its URL when creation gave it.
    single_put: bool = False
    put_target: PartTarget | None = None


@dataclass(frozen=True)
class ServerStatus:
    server: str
    reachable: bool
    # Every backend answers its health check (None when the server was not reachable).
    ready: bool | None
    # Why it is unreachable or not ready.
    problem: str | None
    # None when it could not be checked.
    signed_in: bool | None
    email: str | None


def token_email(access_token: str | None) -> str | None:
    """The `email` claim of a JWT, read without verifying it: for display only."""
    try:
        payload = access_token.split(".")[1]  # type: ignore[union-attr]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["email"])
    except (AttributeError, IndexError, KeyError, ValueError, TypeError):
        return None


class DropfileClient:
    def __init__(
        self,
        server: str | None = None,
        *,
        session_file: str | os.PathLike[str] | None = None,
        persist_session: bool = True,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        storage_timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        storage_transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`server` defaults to $DROPFILE_URL, then the saved session's, then
        http://127.0.0.1:8080. The session is read from and saved to `session_file`
        (default: the config folder, see config.py) unless `persist_session` is false.
        `retry` is the policy of every call worth repeating (an upload's every call;
        RetryPolicy() retries transient failures for up to two minutes). `timeout` /
        `storage_timeout` bound one request to the gateway / storage (a timeout is retried).
        `transport` / `storage_transport` replace httpx's for the gateway / storage."""
        self._store = (
            SessionStore(Path(session_file) if session_file else session_path())
            if persist_session
            else None
        )
        # Uploads that may be resumed are noted beside the session (resume.py).
        self._resumes = ResumeStore(self._store.path.parent / RESUME_FILE) if self._store else None
        saved = self._store.load() if self._store else None
        self.server = resolve_server(server, saved.server if saved else None)
        # A session belongs to its server: another server's cookies are never sent.
        self._email = saved.email if saved and saved.server == self.server else None
        cookies = saved.cookies if saved and saved.server == self.server else {}
        self._retry = retry or RetryPolicy()
        self._storage_transport = storage_transport
        self._storage_timeout = storage_timeout
        self._save_lock = threading.Lock()
        self._gateway = Gateway(
            self.server,
            cookies=cookies,
            timeout=timeout,
            retry=self._retry,
            on_cookies_changed=self._save,
            transport=transport,
        )

    def __enter__(self) -> DropfileClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._gateway.close()

    # -- session -------------------------------------------------------------------------

    @property
    def session_file(self) -> Path | None:
        return self._store.path if self._store else None

    @property
    def signed_in(self) -> bool:
        return bool(self._gateway.cookies)

    @property
    def email(self) -> str | None:
        return self._email or token_email(self._gateway.cookies.get(ACCESS_TOKEN))

    def _save(self, cookies: dict[str, str]) -> None:
        if self._store is None:
            return
        with self._save_lock:
            self._store.save(Session(server=self.server, cookies=cookies, email=self._email))

    def signup(self, email: str, password: str, name: str, *, remember: bool = True) -> None:
        """Creates an account and signs in. `remember` asks for a long-lived session."""
        self._email = email
        self._gateway.call(
            "POST",
            "/api/auth/signup",
            auth=False,
            json={
                "user": {"email": email, "name": name, "password": password},
                "rememberMe": remember,
            },
        )
        self._require_session()

    def login(self, email: str, password: str, *, remember: bool = True) -> None:
        self._email = email
        # Retried like an upload's calls: a server too busy hashing passwords answers 503
        # (and a throttled one 429) with Retry-After; signing in twice is harmless.
        self._gateway.call(
            "POST",
            "/api/auth/signin",
            auth=False,
            idempotent=True,
            json={"user": {"email": email, "password": password}, "rememberMe": remember},
        )
        self._require_session()

    def _require_session(self) -> None:
        if not self._gateway.cookies:
            raise DropfileError("the server accepted the request but started no session")
        self._save(self._gateway.cookies)

    def logout(self) -> None:
        """Ends the session on the server and forgets it here. The local session is
        forgotten even when the server cannot be told (the error is raised afterwards)."""
        try:
            if self._gateway.cookies:
                self._gateway.call("GET", "/api/auth/signout", auth=False)
        finally:
            self._email = None
            for name in list(self._gateway.cookies):
                self._gateway.set_cookie(name, None)
            if self._store:
                saved = self._store.load()
                if saved is None or saved.server == self.server:  # not another server's
                    self._store.clear()

    def status(self) -> ServerStatus:
        """Is the server reachable and ready, and is this session valid there?"""
        try:
            self._gateway.call("GET", "/readyz", auth=False)
            ready, problem = True, None
        except ServerUnreachable as exc:
            return ServerStatus(
                self.server,
                reachable=False,
                ready=None,
                problem=exc.reason,
                signed_in=None if self.signed_in else False,
                email=self.email,
            )
        except ApiError as exc:
            ready, problem = False, exc.message
        except DropfileError as exc:
            return ServerStatus(
                self.server,
                reachable=True,
                ready=False,
                problem=exc.message,
                signed_in=None,
                email=self.email,
            )
        signed_in: bool | None = False
        if self.signed_in:
            try:
                self._gateway.call("GET", "/api/auth/authenticate")
                signed_in = True
            except NotSignedIn:
                signed_in = False
            except DropfileError:
                signed_in = None
        return ServerStatus(
            self.server,
            reachable=True,
            ready=ready,
            problem=problem,
            signed_in=signed_in,
            email=self.email if signed_in else None,
        )

    # -- files ---------------------------------------------------------------------------

    def list(self, *, name: str | None = None, limit: int | None = None) -> list[FileInfo]:
        """The caller's files, newest first: every one (a page of 1,000 at a time), or
        the newest `limit`; `name`: only those whose name contains it, whatever the case."""
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        files: list[FileInfo] = []
        for info in self.iter_files(
            name=name, page_size=min(limit or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        ):
            files.append(info)
            if limit is not None and len(files) >= limit:
                break
        return files

    def iter_files(
        self, *, name: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[FileInfo]:
        """The caller's files, newest first, a page asked for as the last one runs out.
        Paging is stable: no file is yielded twice or skipped, whatever is uploaded or
        deleted meanwhile (files uploaded after the first page are not yielded)."""
        token: str | None = None
        while True:
            page = self.list_page(page_size=page_size, page_token=token, name=name)
            yield from page.files
            token = page.next_page_token
            if token is None:
                return

    def list_page(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
        name: str | None = None,
    ) -> FilePage:
        """One page of the caller's files, newest first (GET /api/v2/files): `page_size`
        1..1000, `page_token` the previous page's next_page_token, `name` a case-insensitive
        substring of the name (every page of one listing with the same `name`)."""
        params: dict[str, str | int] = {"pageSize": page_size}
        if page_token:
            params["pageToken"] = page_token
        if name:
            params["name"] = name
        reply = self._gateway.call("GET", f"/api/v2/files?{urlencode(params)}", idempotent=True)
        entries = reply.get("files")
        token = reply.get("nextPageToken")
        if not isinstance(entries, list) or not (token is None or isinstance(token, str)):
            raise DropfileError("the server's file list is malformed")
        return FilePage(
            files=[FileInfo.from_json(entry) for entry in entries if isinstance(entry, dict)],
            next_page_token=token or None,
        )

    def get_file(self, file_id: str) -> FileInfo:
        """One of the caller's files; ApiError with code NOT_FOUND when there is no such
        file."""
        reply = self._gateway.call(
            "GET", f"/api/v2/files/{quote(file_id, safe='')}", idempotent=True
        )
        entry = reply.get("file")
        if not isinstance(entry, dict):
            raise DropfileError("the server's reply about the file is malformed")
        return FileInfo.from_json(entry)

    def delete(self, file_id: str) -> None:
        self._gateway.call("DELETE", "/api/files/delete", json={"file_id": file_id})

    # -- share links and quota (sharing.py) ----------------------------------------------

    def create_link(
        self,
        file_id: str,
        *,
        expires_in: int | None = None,
        password: str | None = None,
        max_downloads: int | None = None,
    ) -> CreatedLink:
        """A share link to one of the caller's uploaded files: anyone with its URL
        downloads the file without an account, until `expires_in` seconds pass (default:
        the server's, 7 days), `max_downloads` are served, or it is revoked. Its URL is
        told only here."""
        return sharing.create_link(
            self._gateway,
            file_id,
            expires_in=expires_in,
            password=password,
            max_downloads=max_downloads,
        )

    def links(self, file_id: str) -> builtins.list[ShareLink]:
        """The file's share links, newest first (without their URLs)."""
        return sharing.links(self._gateway, file_id)

    def revoke_link(self, link_id: str) -> None:
        """Revokes a share link: it stops working at once."""
        sharing.revoke_link(self._gateway, link_id)

    def quota(self) -> Quota:
        """The caller's storage quota and what counts against it."""
        return sharing.quota(self._gateway)

    def download(
        self,
        file_id: str,
        dest: str | os.PathLike[str] | None = None,
        *,
        overwrite: bool = False,
        on_progress: ProgressCallback | None = None,
        parallel: int = DEFAULT_PARALLEL,
        range_size: int = DEFAULT_RANGE_SIZE,
    ) -> Path:
        """Saves the file at `dest` (a path, or a directory to save it in under its own
        name; default: its name in the current directory). Returns the path written.
        Ranges of `range_size` bytes are fetched `parallel` at a time;
        `on_progress(done_bytes, total_bytes)` is called from the download threads."""
        if parallel < 1:
            raise ValueError("parallel must be 1 or more")
        if range_size < 1:
            raise ValueError("range_size must be 1 or more")
        info = self.get_file(file_id)
        target = target_path(dest, info.name, info.file_id)
        fetch_to(
            self._download_url(info.s3_key),
            target,
            size=info.size,
            overwrite=overwrite,
            on_progress=on_progress,
            transport=self._storage_transport,
            sha256=info.sha256,
            parallel=parallel,
            range_size=range_size,
            retry=self._retry,
            renew_url=lambda: self._download_url(info.s3_key),
        )
        return target

    def _download_url(self, s3_key: str) -> str:
        reply = self._gateway.call(
            "POST", "/api/files/get-download-url", idempotent=True, json={"s3_key": s3_key}
        )
        url = reply.get("url")
        if not isinstance(url, str) or not url:
            raise DropfileError("the server sent no download URL")
        return url

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        mime_type: str | None = None,
        on_progress: ProgressCallback | None = None,
        parallel: int = DEFAULT_PARALLEL,
        wait: bool = True,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        checksum_algorithm: str = DEFAULT_PART_CHECKSUM,
    ) -> FileInfo:
        """Uploads one file in parts, `parallel` at a time, streamed from disk.
        `on_progress(done_bytes, total_bytes)` is called from the upload threads. With
        `wait`, returns once storage has confirmed the file (status UPLOADED).
        `checksum_algorithm` ("CRC32C" or "SHA256") is each part's checksum, which storage
        verifies; a resumed upload keeps the one it was created with."""
        if parallel < 1:
            raise ValueError("parallel must be 1 or more")
        checksum_algorithm = part_checksum_algorithm(checksum_algorithm)
        path = Path(path)
        fd = _open_regular_file(path)
        try:
            file_id = self._upload_open_file(
                fd,
                path,
                name=name or path.name,
                mime_type=mime_type,
                on_progress=on_progress,
                parallel=parallel,
                checksum_algorithm=checksum_algorithm,
            )
        finally:
            os.close(fd)
        if wait:
            return self.wait_until_uploaded(file_id, timeout=wait_timeout)
        return self.get_file(file_id)

    def wait_until_uploaded(
        self, file_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT
    ) -> FileInfo:
        """Polls the list until storage has confirmed the file (UPLOADED)."""
        deadline = time.monotonic() + timeout
        pause = 0.2
        while True:
            info = self.get_file(file_id)
            if info.status == "UPLOADED":
                return info
            if info.status == "FAILED":
                raise DropfileError(f"storage rejected upload {file_id} (status FAILED)")
            if time.monotonic() >= deadline:
                raise ConfirmationTimeout(file_id, timeout, info.status)
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, 2.0)

    def _upload_open_file(
        self,
        fd: int,
        path: Path,
        *,
        name: str,
        mime_type: str | None,
        on_progress: ProgressCallback | None,
        parallel: int,
        checksum_algorithm: str,
    ) -> str:
        before = os.fstat(fd)
        if mime_type is None:
            mime_type = mimetypes.guess_type(name)[0] or ""
        resume_key = ResumeStore.claim(upload_key(self.server, path, before))
        try:
            return self._upload_claimed(
                fd,
                path,
                resume_key,
                before,
                name,
                mime_type,
                on_progress,
                parallel,
                checksum_algorithm,
            )
        finally:
            ResumeStore.release(resume_key)

    def _upload_claimed(
        self,
        fd: int,
        path: Path,
        resume_key: str,
        before: os.stat_result,
        name: str,
        mime_type: str,
        on_progress: ProgressCallback | None,
        parallel: int,
        checksum_algorithm: str,
    ) -> str:
        plan = self._resumable_upload(resume_key, before.st_size, path)
        hasher: FileHasher | None = None
        if plan is None:
            single_hasher = None
            if before.st_size <= SINGLE_PUT_MAX_SIZE:
                # One PUT: its checksum goes with the creation, whose reply has its URL.
                single_hasher = FileHasher(
                    fd,
                    layout(before.st_size, 1, max(before.st_size, 1)),
                    algorithm=checksum_algorithm,
                    file_label=str(path),
                )
            try:
                plan = self._start_upload(
                    resume_key,
                    path,
                    name,
                    mime_type,
                    before.st_size,
                    checksum_algorithm,
                    single_put_checksum=single_hasher.checksum(1) if single_hasher else None,
                )
            except BaseException:
                if single_hasher is not None:
                    single_hasher.close()
                raise
            if single_hasher is not None and not plan.single_put:
                single_hasher.close()  # a multipart upload after all: hashed by its parts
                single_hasher = None
            hasher = single_hasher
        if plan.finished:
            # A completion whose answer was lost before the record was forgotten.
            self._forget(resume_key)
            return plan.file_id
        file_id, upload_id = plan.file_id, plan.upload_id
        try:
            parts = layout(before.st_size, plan.part_count, plan.part_size)
            if hasher is None:
                hasher = FileHasher(
                    fd, parts, algorithm=plan.checksum_algorithm, file_label=str(path)
                )
            progress = ByteCounter(before.st_size, on_progress)
            with storage_client(
                connections=parallel,
                timeout=self._storage_timeout,
                transport=self._storage_transport,
            ) as storage:
                uploader = PartUploader(
                    gateway=self._gateway,
                    storage=storage,
                    fd=fd,
                    file_label=str(path),
                    file_id=file_id,
                    parts=parts,
                    parallel=parallel,
                    retry=self._retry,
                    progress=progress,
                    urls=PartUrlBook(
                        self._gateway,
                        file_id,
                        parts,
                        hasher,
                        stored=plan.stored,
                        batch=max(8, 4 * parallel),
                        targets={1: plan.put_target} if plan.put_target else None,
                    ),
                    record=not plan.single_put,
                )
                try:
                    uploader.run()
                finally:
                    uploader.stop(STOP_GRACE_SECONDS)
            sha256 = hasher.file_sha256()
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise DropfileError(f"{path} changed while it was being uploaded")
            self._gateway.call(
                "POST",
                f"/api/v2/files/{file_id}/complete",
                idempotent=True,
                json={"uploadId": upload_id, "sha256": sha256},
            )
        except KeyboardInterrupt:
            # The user cancelled: nothing is kept.
            aborted, why = self._abort(file_id, upload_id)
            self._forget(resume_key, unless_kept=not aborted)
            raise UploadInterrupted(file_id, name, aborted=aborted, abort_error=why) from None
        except NotSignedIn:
            raise  # kept: signed in again, the same upload resumes
        except DropfileError as exc:
            if exc.transient:
                # The server had a bad moment that outlasted the retries: the parts stored
                # so far stay, and the resume record with them.
                raise UploadFailed(name, exc, resumable=True) from exc
            if (isinstance(exc, ApiError) and exc.code == codes.NOT_FOUND) or (
                isinstance(exc, StorageError) and exc.status == 404  # storage's NoSuchUpload
            ):
                self._forget(resume_key)  # the server says the upload is gone
                raise UploadFailed(name, exc, gone=True) from exc
            aborted, why = self._abort(file_id, upload_id)
            self._forget(resume_key, unless_kept=not aborted)
            raise UploadFailed(name, exc, aborted=aborted, abort_error=why) from exc
        except BaseException:
            aborted, _ = self._abort(file_id, upload_id)
            self._forget(resume_key, unless_kept=not aborted)
            raise
        finally:
            if hasher is not None:
                hasher.close()  # the hashing pass stops before the file is closed
        self._forget(resume_key)
        return file_id

    def _start_upload(
        self,
        resume_key: str,
        path: Path,
        name: str,
        mime_type: str,
        size: int,
        checksum_algorithm: str,
        *,
        single_put_checksum: str | None = None,
    ) -> UploadPlan:
        """A new upload under a file id chosen here and noted for resuming before it is
        asked for: creating it can then be retried like any call, and an upload whose
        creation answer was lost is found again (a retry is refused 409: the id exists).
        `single_put_checksum` (files of up to SINGLE_PUT_MAX_SIZE): the file's checksum;
        the upload is then one PUT, whose URL comes with the reply."""
        single: dict[str, Any] = (
            {"singlePut": True, "partChecksum": single_put_checksum}
            if single_put_checksum is not None
            else {}
        )
        file_id = str(uuid.uuid4())
        if self._resumes:
            self._resumes.put(resume_key, file_id)
        try:
            started = self._gateway.call(
                "POST",
                "/api/v2/files",
                idempotent=True,
                json={
                    "fileId": file_id,
                    "fileName": name,
                    "mimeType": mime_type,
                    "size": size,
                    "checksumAlgorithm": checksum_algorithm,
                    **single,
                },
            )
        except ApiError as exc:
            if single and exc.code in (codes.SINGLE_PUT_TOO_LARGE, codes.INVALID_REQUEST):
                # This server's parts are smaller (its single-PUT limit is its part size),
                # or it predates single PUTs: a multipart upload, under the same id
                # (nothing was created).
                return self._start_upload(
                    resume_key, path, name, mime_type, size, checksum_algorithm
                )
            if exc.code == codes.ALREADY_EXISTS:  # created by a try whose answer was lost
                plan = self._resumable_upload(resume_key, size, path, file_id=file_id)
                if plan is not None:
                    return plan
            self._forget(resume_key)
            raise
        except DropfileError as exc:
            if not exc.transient:
                self._forget(resume_key)
            raise  # transient: the record stays, the next run finds out if it exists
        try:
            return UploadPlan(
                file_id=str(started["fileId"]),
                upload_id=str(started["uploadId"]),
                part_size=int(started["partSize"]),
                part_count=int(started["partCount"]),
                stored={},
                checksum_algorithm=checksum_algorithm,
                single_put=started.get("singlePut") is True,
                put_target=_put_target(started.get("putUrl"), single_put_checksum),
            )
        except (KeyError, TypeError, ValueError):
            raise DropfileError(
                "the server's reply to POST /api/v2/files lacks fileId, "
                "uploadId, partSize or partCount"
            ) from None

    def _resumable_upload(
        self, resume_key: str, size: int, path: Path, *, file_id: str | None = None
    ) -> UploadPlan | None:
        """The upload this unchanged file started and did not finish (`file_id`, else the
        one on record), with the parts storage holds; None when there is none to continue."""
        if file_id is None and self._resumes:
            file_id = self._resumes.get(resume_key)
        if file_id is None:
            return None
        try:
            state = self._gateway.call("GET", f"/api/v2/files/{file_id}/upload", idempotent=True)
        except ApiError as exc:
            if exc.code in codes.NOT_RESUMABLE_CODES:  # gone, or not resumable: start afresh
                self._forget(resume_key)
                return None
            raise
        file = state.get("file")
        if not isinstance(file, dict):
            file = {}
        if state.get("state") in ("COMPLETED", "UPLOADED") and file.get("size") == size:
            return UploadPlan(
                file_id=file_id,
                upload_id=str(state.get("uploadId", "")),
                part_size=0,
                part_count=0,
                stored={},
                finished=True,
            )
        if (
            state.get("state") != "RECEIVING_PARTS"
            or file.get("size") != size
            or state.get("checksumAlgorithm") not in PART_CHECKSUMS
        ):
            self._forget(resume_key)  # not resumable by this client: start afresh
            return None
        try:
            stored = {
                int(entry["partNumber"]): StoredPart(
                    etag=str(entry["etag"]),
                    size=int(entry["size"]),
                    checksum=entry.get("checksum")
                    if isinstance(entry.get("checksum"), str)
                    else None,
                )
                for entry in state.get("storedParts", [])
            }
            plan = UploadPlan(
                file_id=file_id,
                upload_id=str(state["uploadId"]),
                part_size=int(state["partSize"]),
                part_count=int(state["partCount"]),
                stored=stored,
                checksum_algorithm=state["checksumAlgorithm"],
                # Resumed by PUTting it again (to a fresh URL from part-urls).
                single_put=state.get("singlePut") is True,
            )
        except (KeyError, TypeError, ValueError):
            raise DropfileError(
                "the server's reply about the upload to resume is malformed"
            ) from None
        log.info(
            "resuming the upload of %s: %d of %d parts are stored already",
            path,
            len(stored),
            plan.part_count,
        )
        return plan

    def _forget(self, resume_key: str, *, unless_kept: bool = False) -> None:
        """Forgets the resume record; `unless_kept`: keep it (the upload could not be
        aborted, so the next attempt can continue it)."""
        if self._resumes and not unless_kept:
            self._resumes.forget(resume_key)

    def _abort(self, file_id: str, upload_id: str) -> tuple[bool, str | None]:
        """Aborts the multipart upload so storage keeps none of it; (done, why not)."""
        try:
            self._gateway.call(
                "POST",
                "/api/files/abort-upload",
                idempotent=True,
                retry=ABORT_RETRY,
                json={"uploadId": upload_id, "file_id": file_id},
            )
            return True, None
        except DropfileError as exc:
            return False, exc.message


def _put_target(entry: object, checksum: str | None) -> PartTarget | None:
    """The single PUT's URL in the reply to its creation (None: part-urls gives it)."""
    if not isinstance(entry, dict) or checksum is None or not isinstance(entry.get("url"), str):
        return None
    headers = entry.get("headers")
    signed = {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
    return PartTarget(entry["url"], signed, checksum)


def _open_regular_file(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise DropfileError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DropfileError(f"{path}: not a regular file")
    return fd
