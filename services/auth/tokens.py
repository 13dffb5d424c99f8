"""Issuing access tokens and refresh secrets."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import load_pem_private_key

_SEAL_INFO = b"dropfile refresh-token grace seal"
_NONCE_BYTES = 12


class AccessTokenIssuer:
    """Signs RS256 access tokens with a key object loaded once (parsing the PEM on every
    call would cost tens of milliseconds)."""

    def __init__(self, private_key_pem: str, *, issuer: str, audience: str, ttl_seconds: int):
        key = load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, RSAPrivateKey):
            raise ValueError("the private key is not an RSA key: RS256 tokens need one")
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(self, *, user_id: str, email: str, session_id: str) -> str:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "email": email,
            "sid": session_id,  # signing the device session out revokes the token
            "iat": now,
            "exp": now + self.ttl_seconds,
            "jti": str(uuid.uuid4()),
            "iss": self._issuer,
            "aud": self._audience,
        }
        return jwt.encode(claims, self._key, algorithm="RS256")


def new_refresh_token() -> str:
    """256 random bits, URL-safe."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def hash_refresh_token(token: str) -> str:
    # A 256-bit random secret needs no salt or slow hash: SHA-256 cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


def _seal_key(previous: str) -> bytes:
    # Derived from the previous token itself, which the server never stores: only a holder
    # of that token can open the seal, and a database leak opens nothing.
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(previous.encode())


def seal_refresh_token(current: str, *, previous: str, device_id: str) -> str:
    """`current` encrypted (AES-GCM) under a key only `previous` yields, bound to the device."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(_seal_key(previous)).encrypt(nonce, current.encode(), device_id.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal_refresh_token(sealed: str, *, previous: str, device_id: str) -> str | None:
    """The token seal_refresh_token sealed, or None when `previous` does not open it."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return (
            AESGCM(_seal_key(previous))
            .decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], device_id.encode())
            .decode()
        )
    except (InvalidTag, ValueError):
        return None
