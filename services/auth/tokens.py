"""Issuing access tokens and refresh secrets."""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key


class AccessTokenIssuer:
    """Signs RS256 access tokens with a key object loaded once (parsing the PEM on every
    call would cost tens of milliseconds)."""

    def __init__(self, private_key_pem: str, *, issuer: str, audience: str, ttl_seconds: int):
        self._key = load_pem_private_key(private_key_pem.encode(), password=None)
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(self, *, user_id: str, email: str) -> str:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "email": email,
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
