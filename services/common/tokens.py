"""Access-token verification, shared by every gRPC service: each verifies callers itself."""
from __future__ import annotations

import contextvars
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

REQUIRED_CLAIMS = ["sub", "email", "iat", "exp", "jti", "iss", "aud"]


@dataclass(frozen=True)
class Identity:
    user_id: str
    email: str


class InvalidTokenError(Exception):
    pass


current_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "current_identity", default=None
)


class TokenVerifier:
    """Verifies RS256 access tokens. The key object is loaded once: parsing PEM per call
    costs far more than the verification itself."""

    def __init__(self, public_key_pem: str, *, issuer: str, audience: str) -> None:
        self._key = load_pem_public_key(public_key_pem.encode())
        self._issuer = issuer
        self._audience = audience

    def verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["RS256"],  # never "none", never HS256 with the public key
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("access token expired") from None
        except jwt.PyJWTError:
            raise InvalidTokenError("invalid access token") from None
        return Identity(user_id=str(claims["sub"]), email=str(claims["email"]))
