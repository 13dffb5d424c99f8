"""Where the CLI keeps its session and which server it talks to.

The session lives in `$DROPFILE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/dropfile`, else
`~/.config/dropfile`. The server is `--server`, else `$DROPFILE_URL`, else the saved
session's, else the local default."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from .errors import DropfileError

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_ENV = "DROPFILE_URL"
CONFIG_DIR_ENV = "DROPFILE_CONFIG_DIR"
SESSION_FILE = "session.json"


def config_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(CONFIG_DIR_ENV):
        return Path(env[CONFIG_DIR_ENV]).expanduser()
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]).expanduser() / "dropfile"
    return Path.home() / ".config" / "dropfile"


def session_path(environ: dict[str, str] | None = None) -> Path:
    return config_dir(environ) / SESSION_FILE


def normalize_server(url: str) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash; anything else is refused
    here rather than failing obscurely on the first request."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DropfileError(f"server URL must look like http://host:port, not {url!r}")
    if parts.query or parts.fragment:
        raise DropfileError(f"server URL must not have a query or fragment: {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def resolve_server(
    explicit: str | None, saved: str | None, environ: dict[str, str] | None = None
) -> str:
    env = os.environ if environ is None else environ
    for candidate in (explicit, env.get(SERVER_ENV), saved):
        if candidate:
            return normalize_server(candidate)
    return DEFAULT_SERVER
