"""The rules of identity: accounts, device sessions, refresh-token rotation."""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.common.db import Database
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Unauthenticated,
)
from services.common.revocations import RevokedSessions
from services.common.tokens import LEEWAY_SECONDS

from .models import DeviceSession, OidcIdentity, User
from .passwords import MAX_PASSWORD_BYTES, MIN_PASSWORD_LENGTH, PasswordHasher
from .tokens import (
    AccessTokenIssuer,
    hash_refresh_token,
    new_refresh_token,
    seal_refresh_token,
    unseal_refresh_token,
)

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BAD_CREDENTIALS = "invalid email or password"
BAD_REFRESH = "refresh token missing, expired or invalid; sign in again"
# Revocation marks outlive the session's last access token by this much (clock skew).
REVOCATION_MARGIN_SECONDS = 5


@dataclass(frozen=True)
class SessionTokens:
    access_token: str
    refresh_token: str
    device_id: str
    access_token_expires_in: int
    session_expires_in: int


@dataclass(frozen=True)
class FederatedSignIn:
    """A sign-in vouched for by an OpenID Connect issuer."""

    user_id: str
    tokens: SessionTokens
    created: bool  # the account was created by this sign-in
    linked: bool  # the issuer's identity was linked to the account by this sign-in


def _now() -> datetime:
    return datetime.now(UTC)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


class Accounts:
    def __init__(
        self,
        *,
        db: Database,
        hasher: PasswordHasher,
        issuer: AccessTokenIssuer,
        long_session_ttl: int,
        short_session_ttl: int,
        revocations: RevokedSessions,
        refresh_grace_seconds: float,
    ) -> None:
        self._db = db
        self._hasher = hasher
        self._issuer = issuer
        self._long_ttl = long_session_ttl
        self._short_ttl = short_session_ttl
        self._revocations = revocations
        self._refresh_grace = timedelta(seconds=refresh_grace_seconds)

    def sign_up(
        self, *, email: str, name: str, password: str, remember_me: bool
    ) -> tuple[str, SessionTokens]:
        email = normalize_email(email)
        name = name.strip()
        missing = [
            field
            for field, value in (("email", email), ("name", name), ("password", password))
            if not value
        ]
        if missing:
            raise InvalidArgument(f"missing fields: {', '.join(missing)}")
        if len(email) > 320 or not EMAIL_PATTERN.match(email):
            raise InvalidArgument("email is not a valid address")
        if len(name) > 200:
            raise InvalidArgument("name is longer than 200 characters")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InvalidArgument(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise InvalidArgument(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
        password_hash = self._hasher.hash(password)  # slow: outside any transaction
        try:
            with self._db.session() as session:
                user = User(email=email, name=name, password_hash=password_hash)
                session.add(user)
                session.flush()
                tokens = self._open_session(session, user, remember_me)
        except IntegrityError:
            raise AlreadyExists("an account with this email already exists") from None
        return str(user.id), tokens

    def sign_in(self, *, email: str, password: str, remember_me: bool) -> tuple[str, SessionTokens]:
        email = normalize_email(email)
        if not email or not password:
            raise InvalidArgument("missing fields: email and password are required")
        with self._db.session() as session:
            user = session.scalar(select(User).where(User.email == email))
        # Unknown email and wrong password take the same time and give the same answer.
        if not self._hasher.verify(password, user.password_hash if user else None) or not user:
            raise Unauthenticated(BAD_CREDENTIALS, reason="BAD_CREDENTIALS")
        with self._db.session() as session:
            tokens = self._open_session(session, user, remember_me)
        return str(user.id), tokens

    def sign_in_with_identity(
        self, *, issuer: str, subject: str, email: str, name: str, remember_me: bool
    ) -> FederatedSignIn:
        """Opens a device session for the account linked to `issuer`'s `subject`. The first
        time, the identity is linked to the account with `email`, or to a new account
        without a password: the caller has made sure the issuer verified that email.
        Concurrent first sign-ins of one identity: one links, the other finds its link."""
        try:
            return self._sign_in_with_identity(issuer, subject, email, name, remember_me)
        except IntegrityError:
            # Another sign-in created the account or the link meanwhile: now it is found.
            return self._sign_in_with_identity(issuer, subject, email, name, remember_me)

    def _sign_in_with_identity(
        self, issuer: str, subject: str, email: str, name: str, remember_me: bool
    ) -> FederatedSignIn:
        email = normalize_email(email)
        created = linked = False
        with self._db.session() as session:
            identity = session.scalar(
                select(OidcIdentity).where(
                    OidcIdentity.issuer == issuer, OidcIdentity.subject == subject
                )
            )
            if identity is not None:  # linked before: the subject decides, not the email
                user = session.get(User, identity.user_id)
                identity.last_used_at = _now()
            else:
                user = session.scalar(select(User).where(User.email == email))
                if user is None:
                    user = User(email=email, name=name, password_hash=None)
                    session.add(user)
                    session.flush()
                    created = True
                elif session.scalar(
                    select(OidcIdentity.id).where(
                        OidcIdentity.user_id == user.id, OidcIdentity.issuer == issuer
                    )
                ):
                    raise FailedPrecondition(
                        "the Dropfile account with this email is linked to another account "
                        "at this single sign-on provider",
                        reason="OIDC_ACCOUNT_LINKED_ELSEWHERE",
                    )
                session.add(
                    OidcIdentity(user_id=user.id, issuer=issuer, subject=subject, email=email)
                )
                session.flush()
                linked = True
            assert user is not None  # the foreign key keeps the identity's user
            tokens = self._open_session(session, user, remember_me)
        return FederatedSignIn(str(user.id), tokens, created=created, linked=linked)

    def refresh(self, *, refresh_token: str, device_id: str) -> SessionTokens:
        session_id = _parse_uuid(device_id)
        if session_id is None or not refresh_token:
            raise Unauthenticated(BAD_REFRESH, reason="REFRESH_TOKEN_INVALID")
        with self._db.session() as session:
            device = session.get(DeviceSession, session_id, with_for_update=True)
            now = _now()
            if device is None or device.revoked_at is not None or device.expires_at <= now:
                raise Unauthenticated(BAD_REFRESH, reason="REFRESH_TOKEN_INVALID")
            presented = hash_refresh_token(refresh_token)
            if hmac.compare_digest(presented, device.refresh_token_hash):
                refresh = new_refresh_token()
                device.refresh_token_hash = hash_refresh_token(refresh)
                device.previous_refresh_token_hash = presented
                device.refresh_token_rotated_at = now
                device.sealed_refresh_token = seal_refresh_token(
                    refresh, previous=refresh_token, device_id=str(device.id)
                )
            else:
                # The token just rotated away, again within the grace window (two tabs,
                # two CLI processes, a retry whose answer was lost): the same new token as
                # the first caller got, so every holder ends up with one that works. After
                # the window, or any older or forged token: someone may hold a stolen copy,
                # so the whole device session ends, its access tokens with it.
                refresh = self._within_grace(device, refresh_token, presented, now)
                if refresh is None:
                    device.revoked_at = now
                    # Before the commit: if Redis cannot be told, nothing is revoked and
                    # the caller is answered UNAVAILABLE (every token is refused meanwhile).
                    self._revoke_access(device)
            if refresh is not None:
                user = session.get(User, device.user_id)
                device.last_used_at = now
                tokens = self._tokens(user, device, refresh)
        if refresh is None:
            raise Unauthenticated(
                "refresh token was already used; the session is revoked",
                reason="REFRESH_TOKEN_REUSED",
            )
        return tokens

    def _within_grace(
        self, device: DeviceSession, refresh_token: str, presented: str, now: datetime
    ) -> str | None:
        """The current refresh token, when `refresh_token` is the one it replaced less
        than the grace window ago; else None."""
        if (
            device.previous_refresh_token_hash is None
            or device.sealed_refresh_token is None
            or device.refresh_token_rotated_at is None
            or not hmac.compare_digest(presented, device.previous_refresh_token_hash)
            or now - device.refresh_token_rotated_at > self._refresh_grace
        ):
            return None
        return unseal_refresh_token(
            device.sealed_refresh_token, previous=refresh_token, device_id=str(device.id)
        )

    def sign_out(self, *, device_id: str) -> None:
        session_id = _parse_uuid(device_id)
        if session_id is None:
            return
        with self._db.session() as session:
            device = session.get(DeviceSession, session_id, with_for_update=True)
            if device is not None and device.revoked_at is None:
                device.revoked_at = _now()
                self._revoke_access(device)  # raises Unavailable (and rolls back) if it cannot

    def _revoke_access(self, device: DeviceSession) -> None:
        """Every service refuses the session's access tokens from now on (within a second):
        marked in Redis for as long as the newest of them may still be accepted."""
        self._revocations.revoke(
            str(device.id),
            seconds=self._issuer.ttl_seconds + LEEWAY_SECONDS + REVOCATION_MARGIN_SECONDS,
        )

    def _open_session(self, session, user: User, remember_me: bool) -> SessionTokens:
        ttl = self._long_ttl if remember_me else self._short_ttl
        refresh = new_refresh_token()
        device = DeviceSession(
            id=uuid.uuid4(),
            user_id=user.id,
            refresh_token_hash=hash_refresh_token(refresh),
            remember_me=remember_me,
            expires_at=_now() + timedelta(seconds=ttl),
        )
        session.add(device)
        return self._tokens(user, device, refresh)

    def _tokens(self, user: User, device: DeviceSession, refresh: str) -> SessionTokens:
        remaining = int((device.expires_at - _now()).total_seconds())
        return SessionTokens(
            access_token=self._issuer.issue(
                user_id=str(user.id), email=user.email, session_id=str(device.id)
            ),
            refresh_token=refresh,
            device_id=str(device.id),
            access_token_expires_in=self._issuer.ttl_seconds,
            session_expires_in=max(remaining, 0),
        )
