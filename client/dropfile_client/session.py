"""The saved session: the server and its three session cookies, in a JSON file only the
user can read (0600, in a 0700 directory), replaced atomically so a crash never leaves half
a file. The refresh token rotates on every refresh, so the file is rewritten each time: an
old refresh token is worthless (presenting it ends the session), except for a short grace
window in which it gets the same new token (two processes refreshing at once both work)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DropfileError

ACCESS_TOKEN = "access_token"
REFRESH_TOKEN = "refresh_token"
DEVICE_ID = "device_id"
SESSION_COOKIES = (ACCESS_TOKEN, REFRESH_TOKEN, DEVICE_ID)
FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass
class Session:
    server: str
    cookies: dict[str, str] = field(default_factory=dict)
    email: str | None = None

    @property
    def signed_in(self) -> bool:
        return bool(self.cookies.get(REFRESH_TOKEN) or self.cookies.get(ACCESS_TOKEN))

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "email": self.email,
            "cookies": {
                name: self.cookies[name] for name in SESSION_COOKIES if self.cookies.get(name)
            },
        }

    @classmethod
    def from_json(cls, data: object) -> Session | None:
        if not isinstance(data, dict) or not isinstance(data.get("server"), str):
            return None
        cookies = data.get("cookies")
        if not isinstance(cookies, dict):
            cookies = {}
        email = data.get("email") if isinstance(data.get("email"), str) else None
        return cls(
            server=data["server"],
            email=email,
            cookies={
                name: value
                for name, value in cookies.items()
                if name in SESSION_COOKIES and isinstance(value, str) and value
            },
        )


class SessionStore:
    """Reads and writes one session file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> Session | None:
        """The saved session; None when there is none or it is unreadable (a damaged file
        only means signing in again)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                return Session.from_json(json.load(handle))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None

    def save(self, session: Session) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            temporary = directory / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
            # Created 0600 from the start: the tokens are never readable by others, not
            # even for a moment (a chmod afterwards would leave a window).
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(session.to_json(), handle, indent=2)
                    handle.write("\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DropfileError(
                f"cannot save the session in {self.path}: {exc.strerror or exc}"
            ) from None

    def clear(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise DropfileError(
                f"cannot remove the session file {self.path}: {exc.strerror or exc}"
            ) from None
