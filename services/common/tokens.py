"""Access-token verification, shared by every gRPC service: each verifies callers itself."""

from __future__ import annotations

import contextvars
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .metrics import TOKEN_SIGNATURE_CHECKS, TOKENS_REFUSED
from .revocations import RevokedSessions, revocation_client
from .settings import GrpcServiceSettings

# `sid` names the device session the token was issued for (signing out revokes it).
REQUIRED_CLAIMS = ["sub", "email", "sid", "iat", "exp", "jti", "iss", "aud"]
ALGORITHM = "RS256"
LEEWAY_SECONDS = 5
# Tokens whose signature did not verify are refused from memory for this long (a flood of
# the same forged token costs one RSA check per process per minute), at most this many.
REJECTED_TTL_SECONDS = 60.0
REJECTED_CACHE_SIZE = 16384
INVALID = "invalid access token"
SIGNED_OUT = "this session was signed out; sign in again"


_REFUSED_BY_CLAIMS = TOKENS_REFUSED.labels("claims")
_REFUSED_FROM_MEMORY = TOKENS_REFUSED.labels("memory")
_REFUSED_BY_SIGNATURE = TOKENS_REFUSED.labels("signature")
_REFUSED_SIGNED_OUT = TOKENS_REFUSED.labels("signed_out")
_VALID_SIGNATURE = TOKEN_SIGNATURE_CHECKS.labels("valid")
_INVALID_SIGNATURE = TOKEN_SIGNATURE_CHECKS.labels("invalid")


@dataclass(frozen=True)
class Identity:
    user_id: str
    email: str
    session_id: str


class InvalidTokenError(Exception):
    pass


current_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "current_identity", default=None
)


class TokenVerifier:
    """Verifies RS256 access tokens and refuses those of signed-out sessions. The key
    object is loaded once: parsing PEM per call costs far more than the verification.

    `verify` raises InvalidTokenError for a token that is not (or no longer) good, and
    services.common.errors.Unavailable when whether its session was revoked cannot be
    known (Redis down: see revocations.py)."""

    def __init__(
        self,
        public_key_pem: str,
        *,
        issuer: str,
        audience: str,
        revocations: RevokedSessions,
        cache_size: int = 4096,
    ) -> None:
        key = load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, RSAPublicKey):
            raise ValueError("the public key is not an RSA key: RS256 tokens need one")
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._revocations = revocations
        # Tokens already verified, with their expiry: a client sends the same token with
        # every call for minutes, and an RS256 check costs ~70 µs of CPU (a tenth of a
        # RecordPart). Keyed by the whole token, signature included, so only a token that
        # verified once is ever accepted from here, and only until it expires.
        self._verified: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        self._cache_size = cache_size
        # SHA-256 of tokens whose signature failed -> until when they are refused unchecked.
        self._rejected: OrderedDict[bytes, float] = OrderedDict()
        self._cache_lock = threading.Lock()

    @property
    def revocations(self) -> RevokedSessions:
        return self._revocations

    def verify(self, token: str) -> Identity:
        identity = self._identity_of(token)
        if self._revocations.is_revoked(identity.session_id):
            _REFUSED_SIGNED_OUT.inc()
            raise InvalidTokenError(SIGNED_OUT)
        return identity

    def _identity_of(self, token: str) -> Identity:
        with self._cache_lock:
            cached = self._verified.get(token)
        if cached is not None and time.time() <= cached[1]:
            return cached[0]
        digest = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        with self._cache_lock:
            rejected_until = self._rejected.get(digest)
        if rejected_until is not None and now < rejected_until:
            _REFUSED_FROM_MEMORY.inc()
            raise InvalidTokenError(INVALID)
        try:
            self._check_unverified(token)  # cheap refusals before the RSA check
        except InvalidTokenError:
            _REFUSED_BY_CLAIMS.inc()
            raise
        try:
            identity, expires = self._verify_signature(token)
        except InvalidTokenError:
            _REFUSED_BY_SIGNATURE.inc()
            with self._cache_lock:
                self._rejected[digest] = now + REJECTED_TTL_SECONDS
                self._rejected.move_to_end(digest)
                while len(self._rejected) > REJECTED_CACHE_SIZE:
                    self._rejected.popitem(last=False)
            raise
        with self._cache_lock:
            self._verified[token] = (identity, expires)
            while len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return identity

    def _check_unverified(self, token: str) -> None:
        """What can be refused without the key: another algorithm (HS256 keyed with the
        public key, none), another issuer or audience, a missing claim, an expired token."""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidTokenError(INVALID) from None
        if header.get("alg") != ALGORITHM:
            raise InvalidTokenError(INVALID)
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if (
            any(name not in claims for name in REQUIRED_CLAIMS)
            or claims.get("iss") != self._issuer
            or self._audience not in audiences
        ):
            raise InvalidTokenError(INVALID)
        expires = claims.get("exp")
        if not isinstance(expires, (int, float)) or isinstance(expires, bool):
            raise InvalidTokenError(INVALID)
        if expires + LEEWAY_SECONDS < time.time():
            raise InvalidTokenError("access token expired")

    def _verify_signature(self, token: str) -> tuple[Identity, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],  # never "none", never HS256 with the public key
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("access token expired") from None
        except jwt.InvalidSignatureError:
            _INVALID_SIGNATURE.inc()
            raise InvalidTokenError(INVALID) from None
        except jwt.PyJWTError:
            raise InvalidTokenError(INVALID) from None
        _VALID_SIGNATURE.inc()
        # Cached until exp plus the same leeway jwt.decode allows.
        return (
            Identity(
                user_id=str(claims["sub"]),
                email=str(claims["email"]),
                session_id=str(claims["sid"]),
            ),
            float(claims["exp"]) + LEEWAY_SECONDS,
        )


def verifier_for(settings: GrpcServiceSettings, public_key_pem: str) -> TokenVerifier:
    """The verifier of a gRPC service (GrpcServiceSettings): its issuer, audience and
    Redis of revoked sessions."""
    return TokenVerifier(
        public_key_pem,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        revocations=RevokedSessions(
            revocation_client(settings.cloud_rd_uri),
            max_age_seconds=settings.revocation_check_seconds,
        ),
    )
