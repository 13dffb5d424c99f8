"""What can go wrong when talking to Dropfile, as exceptions a script can catch.

Every failure the SDK reports is a DropfileError with a one-line, human `message`, except
an interrupted upload, which stays a KeyboardInterrupt (UploadInterrupted) so that Ctrl-C
keeps meaning "stop" to any caller."""

from __future__ import annotations

from .codes import is_transient


class DropfileError(Exception):
    """A failure worth one line to a person: `message` says what happened. `transient`:
    the same request may succeed later (after `retry_after` seconds, when the server
    said); such failures are retried (retry.py) and never cost an upload its parts."""

    transient = False
    retry_after: float | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(DropfileError):
    """The server refused a request: `code` says why, for a program to branch on (for
    example "NOT_FOUND", "QUOTA_EXCEEDED", "PART_NOT_RECORDED"; the server's README lists
    them; `HTTP_<status>` for an answer that carried none), `message` the server's `error`
    text for a person, `status` the HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or f"HTTP_{status}"
        self.path = path
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:  # type: ignore[override]
        return is_transient(self.code, self.status)

    def __repr__(self) -> str:
        return (
            f"ApiError(status={self.status}, code={self.code!r}, message={self.message!r}, "
            f"path={self.path!r})"
        )


class NotSignedIn(DropfileError):
    """No session for this server, or the server ended it (refresh refused)."""


class ServerUnreachable(DropfileError):
    """The server could not be reached, or the connection broke before its answer
    (refused, timed out, dropped, DNS, TLS...)."""

    transient = True

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"cannot reach {server}: {reason}")
        self.server = server
        self.reason = reason


class StorageError(DropfileError):
    """Storage refused or kept failing a part upload or a download (`status`: its answer,
    when it gave one; 404 for a part means the multipart upload is gone)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetriesExhausted(DropfileError):
    """A transient failure that outlasted the retry policy: `cause` is the last one. The
    work is not lost: an upload stopped by it is kept, and running it again resumes it."""

    transient = True

    def __init__(self, cause: DropfileError, summary: str) -> None:
        status = getattr(cause, "status", None) if isinstance(cause, ApiError) else None
        answer = f"HTTP {status}, " if status else ""
        super().__init__(f"{cause.message} ({answer}still failing after {summary})")
        self.cause = cause


class UploadFailed(DropfileError):
    """An upload stopped on an error; `cause` is the error that stopped it. After a
    failure that time may lift (the server down or failing for longer than the retries
    lasted) the upload is kept (`resumable`): uploading the same file again resumes it.
    When the server said the upload is gone, there is nothing to keep (`gone`). Any other
    refusal aborts it (`aborted`) so storage keeps nothing of it."""

    def __init__(
        self,
        file_name: str,
        cause: DropfileError,
        *,
        aborted: bool = False,
        abort_error: str | None = None,
        resumable: bool = False,
        gone: bool = False,
    ) -> None:
        if resumable:
            outcome = "the upload was kept: run the same command again to resume it"
        elif gone:
            outcome = "the upload is gone from the server: uploading again starts afresh"
        elif aborted:
            outcome = "the partial upload was aborted"
        else:
            outcome = f"aborting the partial upload failed too ({abort_error})"
        super().__init__(f"{file_name}: {cause.message}; {outcome}")
        self.cause = cause
        self.aborted = aborted
        self.resumable = resumable
        self.gone = gone


class ConfirmationTimeout(DropfileError):
    """The upload completed but storage did not confirm it (status UPLOADED) in time. The
    file is not lost: it may still become UPLOADED; `dropfile ls` shows it."""

    def __init__(self, file_id: str, seconds: float, status: str) -> None:
        super().__init__(
            f"upload {file_id} completed but storage has not confirmed it after "
            f"{seconds:g} s (status {status}); check later with `dropfile ls`"
        )
        self.file_id = file_id
        self.status = status


class UploadInterrupted(KeyboardInterrupt):
    """Ctrl-C during an upload. The multipart upload was aborted when `aborted` is true
    (otherwise `abort_error` says why not). Still a KeyboardInterrupt for callers."""

    def __init__(
        self, file_id: str, file_name: str, *, aborted: bool, abort_error: str | None = None
    ) -> None:
        super().__init__(file_id)
        self.file_id = file_id
        self.file_name = file_name
        self.aborted = aborted
        self.abort_error = abort_error
