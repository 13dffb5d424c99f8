"""The rules of identity: accounts, device sessions, refresh-token rotation. What they read
and write is PostgreSQL's (store.py)."""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from services.common.revocations import RevokedSessions
from services.common.tokens import LEEWAY_SECONDS

from .passwords import MAX_PASSWORD_BYTES, MIN_PASSWORD_LENGTH, PasswordHasher
from .store import (
    Account,
    AccountStore,
    Device,
    EmailTaken,
    IdentityLinkedElsewhere,
    IdentityRace,
    NewDevice,
)
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
        store: AccountStore,
        hasher: PasswordHasher,
        issuer: AccessTokenIssuer,
        long_session_ttl: int,
        short_session_ttl: int,
        revocations: RevokedSessions,
        refresh_grace_seconds: float,
    ) -> None:
        self._store = store
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
        refresh, device = self._new_device(remember_me)
        try:
            account = self._store.create_account(
                email=email, name=name, password_hash=password_hash, device=device
            )
        except EmailTaken:
            raise AlreadyExists("an account with this email already exists") from None
        return str(account.id), self._tokens(account, device.id, device.expires_at, refresh)

    def sign_in(self, *, email: str, password: str, remember_me: bool) -> tuple[str, SessionTokens]:
        email = normalize_email(email)
        if not email or not password:
            raise InvalidArgument("missing fields: email and password are required")
        account = self._store.account_by_email(email)
        # Unknown email and wrong password take the same time and give the same answer.
        if (
            not self._hasher.verify(password, account.password_hash if account else None)
            or not account
        ):
            raise Unauthenticated(BAD_CREDENTIALS, reason="BAD_CREDENTIALS")
        refresh, device = self._new_device(remember_me)
        self._store.open_device(account.id, device)
        return str(account.id), self._tokens(account, device.id, device.expires_at, refresh)

    def sign_in_with_identity(
        self, *, issuer: str, subject: str, email: str, name: str, remember_me: bool
    ) -> FederatedSignIn:
        """Opens a device session for the account linked to `issuer`'s `subject`. The first
        time, the identity is linked to the account with `email`, or to a new account
        without a password: the caller has made sure the issuer verified that email.
        Concurrent first sign-ins of one identity: one links, the other finds its link."""
        email = normalize_email(email)
        for _attempt in range(2):
            refresh, device = self._new_device(remember_me)
            try:
                found = self._store.sign_in_identity(
                    issuer=issuer, subject=subject, email=email, name=name, device=device, at=_now()
                )
            except IdentityRace:
                continue  # another sign-in created the account or the link meanwhile
            except IdentityLinkedElsewhere:
                raise FailedPrecondition(
                    "the Dropfile account with this email is linked to another account "
                    "at this single sign-on provider",
                    reason="OIDC_ACCOUNT_LINKED_ELSEWHERE",
                ) from None
            tokens = self._tokens(found.account, device.id, device.expires_at, refresh)
            return FederatedSignIn(
                str(found.account.id), tokens, created=found.created, linked=found.linked
            )
        raise Unavailable("the sign-in raced another one; try again", retry_after=1)

    def refresh(self, *, refresh_token: str, device_id: str) -> SessionTokens:
        session_id = _parse_uuid(device_id)
        if session_id is None or not refresh_token:
            raise Unauthenticated(BAD_REFRESH, reason="REFRESH_TOKEN_INVALID")
        tokens: SessionTokens | None = None
        with self._store.locked_device(session_id) as locked:
            now = _now()
            if locked is None:
                raise Unauthenticated(BAD_REFRESH, reason="REFRESH_TOKEN_INVALID")
            device = locked.device
            if device.revoked_at is not None or device.expires_at <= now:
                raise Unauthenticated(BAD_REFRESH, reason="REFRESH_TOKEN_INVALID")
            presented = hash_refresh_token(refresh_token)
            refresh: str | None
            if hmac.compare_digest(presented, device.refresh_token_hash):
                refresh = new_refresh_token()
                locked.rotate(
                    refresh_token_hash=hash_refresh_token(refresh),
                    previous_refresh_token_hash=presented,
                    sealed_refresh_token=seal_refresh_token(
                        refresh, previous=refresh_token, device_id=str(device.id)
                    ),
                    at=now,
                )
            else:
                # The token just rotated away, again within the grace window (two tabs,
                # two CLI processes, a retry whose answer was lost): the same new token as
                # the first caller got, so every holder ends up with one that works. After
                # the window, or any older or forged token: someone may hold a stolen copy,
                # so the whole device session ends, its access tokens with it.
                refresh = self._within_grace(device, refresh_token, presented, now)
                if refresh is None:
                    locked.revoke(now)
                    # Before the commit: if Redis cannot be told, nothing is revoked and
                    # the caller is answered UNAVAILABLE (every token is refused meanwhile).
                    self._revoke_access(device.id)
            if refresh is not None:
                account = locked.account()
                locked.used(now)
                tokens = self._tokens(account, device.id, device.expires_at, refresh)
        if tokens is None:
            raise Unauthenticated(
                "refresh token was already used; the session is revoked",
                reason="REFRESH_TOKEN_REUSED",
            )
        return tokens

    def _within_grace(
        self, device: Device, refresh_token: str, presented: str, now: datetime
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
        with self._store.locked_device(session_id) as locked:
            if locked is not None and locked.device.revoked_at is None:
                locked.revoke(_now())
                # Raises Unavailable (and so rolls back) when Redis cannot be told.
                self._revoke_access(locked.device.id)

    def _revoke_access(self, device_id: uuid.UUID) -> None:
        """Every service refuses the session's access tokens from now on (within a second):
        marked in Redis for as long as the newest of them may still be accepted."""
        self._revocations.revoke(
            str(device_id),
            seconds=self._issuer.ttl_seconds + LEEWAY_SECONDS + REVOCATION_MARGIN_SECONDS,
        )

    def _new_device(self, remember_me: bool) -> tuple[str, NewDevice]:
        """A device session to open, and its first refresh token."""
        ttl = self._long_ttl if remember_me else self._short_ttl
        refresh = new_refresh_token()
        return refresh, NewDevice(
            id=uuid.uuid4(),
            refresh_token_hash=hash_refresh_token(refresh),
            remember_me=remember_me,
            expires_at=_now() + timedelta(seconds=ttl),
        )

    def _tokens(
        self, account: Account, device_id: uuid.UUID, expires_at: datetime, refresh: str
    ) -> SessionTokens:
        remaining = int((expires_at - _now()).total_seconds())
        return SessionTokens(
            access_token=self._issuer.issue(
                user_id=str(account.id), email=account.email, session_id=str(device_id)
            ),
            refresh_token=refresh,
            device_id=str(device_id),
            access_token_expires_in=self._issuer.ttl_seconds,
            session_expires_in=max(remaining, 0),
        )
