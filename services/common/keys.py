"""Key material: from the environment in production; generated once and kept on disk in
development, so every local process (and every restart) shares the same keys."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from .settings import DEVELOPMENT_MARKS, BaseServiceSettings, secret_text

PRIVATE_KEY_FILE = "jwt-private.pem"
PUBLIC_KEY_FILE = "jwt-public.pem"
SERVICE_TOKEN_FILE = "service-token"
# Written into everything generated here, so a production process given it refuses to start
# (settings.BaseServiceSettings). PEM allows explanatory text before "-----BEGIN".
DEVELOPMENT_MARK = DEVELOPMENT_MARKS[0]
PEM_MARK_LINE = (
    f"{DEVELOPMENT_MARK} key: generated for one developer's machine, never for production\n"
)


class MissingSecretError(RuntimeError):
    pass


def normalize_pem(value: str) -> str:
    """PEM from an environment variable may carry literal `\\n` instead of newlines."""
    return value.replace("\\n", "\n").strip() + "\n"


def _kept_file(directory: Path, name: str, make: Callable[[], bytes]) -> bytes:
    """Reads directory/name, creating it first if absent. Several processes may start at
    once: the content is written to a private temp file and linked into place, which
    fails for all but the first writer, so everyone reads the same content."""
    path = directory / name
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(make())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()


def _new_private_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return PEM_MARK_LINE.encode() + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _dev_key_pair(settings: BaseServiceSettings) -> tuple[str, str]:
    private_pem = _kept_file(settings.dropfile_keys_dir, PRIVATE_KEY_FILE, _new_private_key_pem)

    def public_from_private() -> bytes:
        key = serialization.load_pem_private_key(private_pem, password=None)
        return PEM_MARK_LINE.encode() + key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    public_pem = _kept_file(settings.dropfile_keys_dir, PUBLIC_KEY_FILE, public_from_private)
    return private_pem.decode(), public_pem.decode()


def private_key_pem(settings: BaseServiceSettings, configured: SecretStr | str | None) -> str:
    """The PEM private key that signs access tokens: `configured` (the PRIVATE_KEY setting),
    else in development the one generated and kept under DROPFILE_KEYS_DIR."""
    if secret_text(configured):
        return normalize_pem(secret_text(configured))
    if not settings.development:
        raise MissingSecretError("PRIVATE_KEY is required outside development")
    return _dev_key_pair(settings)[0]


def public_key_pem(settings: BaseServiceSettings, configured: str | None) -> str:
    if configured:
        return normalize_pem(configured)
    if not settings.development:
        raise MissingSecretError("PUBLIC_KEY is required outside development")
    return _dev_key_pair(settings)[1]


def service_token(settings: BaseServiceSettings, configured: SecretStr | str | None) -> str:
    """The service credential: `configured` (the SERVICE_TOKEN setting), else in
    development the one generated and kept under DROPFILE_KEYS_DIR."""
    if secret_text(configured):
        return secret_text(configured)
    if not settings.development:
        raise MissingSecretError("SERVICE_TOKEN is required outside development")
    token = _kept_file(
        settings.dropfile_keys_dir,
        SERVICE_TOKEN_FILE,
        lambda: f"{DEVELOPMENT_MARK}-{secrets.token_urlsafe(32)}".encode(),
    )
    return token.decode().strip()
