"""The auth service's PostgreSQL: accounts, device sessions and single sign-on identities
(tables in models.py). Every
statement the service runs is here; the rules (accounts.py, guard.py) see plain records."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.db import Database

from .models import DeviceSession, OidcIdentity, User


class EmailTaken(Exception):
    """Another account has this email."""


class IdentityLinkedElsewhere(Exception):
    """The account with the identity's email is linked to another subject of its issuer."""


class IdentityRace(Exception):
    """Another sign-in created the account or the link at the same time: try again."""


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    email: str
    # None: an account made by single sign-on, which has no password.
    password_hash: str | None = field(repr=False)


@dataclass(frozen=True)
class FederatedAccount:
    account: Account
    created: bool  # the account was created by this sign-in
    linked: bool  # the identity was linked to the account by this sign-in


@dataclass(frozen=True)
class NewDevice:
    """A device session to open: the hash of its first refresh token, and its lifetime."""

    id: uuid.UUID
    refresh_token_hash: str
    remember_me: bool
    expires_at: datetime


@dataclass(frozen=True)
class Device:
    """A device session as stored: the hash of its current refresh token and, for a grace
    window after each rotation, the hash of the previous one with the current one sealed
    under it (tokens.seal_refresh_token)."""

    id: uuid.UUID
    user_id: uuid.UUID
    refresh_token_hash: str
    previous_refresh_token_hash: str | None
    refresh_token_rotated_at: datetime | None
    sealed_refresh_token: str | None
    expires_at: datetime
    revoked_at: datetime | None


def _account(user: User) -> Account:
    return Account(id=user.id, email=user.email, password_hash=user.password_hash)


def _device(row: DeviceSession) -> Device:
    return Device(
        id=row.id,
        user_id=row.user_id,
        refresh_token_hash=row.refresh_token_hash,
        previous_refresh_token_hash=row.previous_refresh_token_hash,
        refresh_token_rotated_at=row.refresh_token_rotated_at,
        sealed_refresh_token=row.sealed_refresh_token,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _add_device(session: Session, user_id: uuid.UUID, device: NewDevice) -> None:
    session.add(
        DeviceSession(
            id=device.id,
            user_id=user_id,
            refresh_token_hash=device.refresh_token_hash,
            remember_me=device.remember_me,
            expires_at=device.expires_at,
        )
    )


class LockedDevice:
    """A device session's row, locked (FOR UPDATE) until its transaction ends: what it
    holds now (`device`), and the changes the rules make to it."""

    def __init__(self, session: Session, row: DeviceSession) -> None:
        self._session = session
        self._row = row

    @property
    def device(self) -> Device:
        return _device(self._row)

    def account(self) -> Account:
        """The account the session belongs to."""
        user = self._session.get(User, self._row.user_id)
        if user is None:  # the foreign key cascades: a session never outlives its account
            raise LookupError(f"device session {self._row.id} has no account")
        return _account(user)

    def rotate(
        self,
        *,
        refresh_token_hash: str,
        previous_refresh_token_hash: str,
        sealed_refresh_token: str,
        at: datetime,
    ) -> None:
        self._row.refresh_token_hash = refresh_token_hash
        self._row.previous_refresh_token_hash = previous_refresh_token_hash
        self._row.refresh_token_rotated_at = at
        self._row.sealed_refresh_token = sealed_refresh_token

    def revoke(self, at: datetime) -> None:
        self._row.revoked_at = at

    def used(self, at: datetime) -> None:
        self._row.last_used_at = at


class AccountStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create_account(
        self, *, email: str, name: str, password_hash: str, device: NewDevice
    ) -> Account:
        """The account and its first device session, in one transaction; EmailTaken when
        the email is another account's."""
        try:
            with self._db.session() as session:
                user = User(email=email, name=name, password_hash=password_hash)
                session.add(user)
                session.flush()
                _add_device(session, user.id, device)
        except IntegrityError:
            raise EmailTaken(email) from None
        return _account(user)

    def account_by_email(self, email: str) -> Account | None:
        with self._db.session() as session:
            user = session.scalar(select(User).where(User.email == email))
            return None if user is None else _account(user)

    def open_device(self, user_id: uuid.UUID, device: NewDevice) -> None:
        with self._db.session() as session:
            _add_device(session, user_id, device)

    def live_refresh_token_hash(
        self, *, email: str, device_id: uuid.UUID, now: datetime
    ) -> str | None:
        """The current refresh token's hash of device session `device_id`, when it is a
        session of `email`'s account, neither revoked nor expired at `now`; else None."""
        with self._db.session() as session:
            row = session.execute(
                select(DeviceSession.refresh_token_hash)
                .join(User, User.id == DeviceSession.user_id)
                .where(
                    DeviceSession.id == device_id,
                    User.email == email,
                    DeviceSession.revoked_at.is_(None),
                    DeviceSession.expires_at > now,
                )
            ).first()
        return None if row is None else row[0]

    @contextmanager
    def locked_device(self, device_id: uuid.UUID) -> Iterator[LockedDevice | None]:
        """The device session, locked for the block, or None when there is none. The
        block's changes are committed when it ends, rolled back when it raises."""
        with self._db.session() as session:
            row = session.get(DeviceSession, device_id, with_for_update=True)
            yield None if row is None else LockedDevice(session, row)

    def sign_in_identity(
        self,
        *,
        issuer: str,
        subject: str,
        email: str,
        name: str,
        device: NewDevice,
        at: datetime,
    ) -> FederatedAccount:
        """The account linked to `issuer`'s `subject` (the subject decides, not the email),
        or, the first time, the account with `email` (or a new one without a password)
        linked to it; with `device` opened, all in one transaction. IdentityRace when a
        concurrent sign-in made the account or the link first."""
        created = linked = False
        try:
            with self._db.session() as session:
                identity = session.scalar(
                    select(OidcIdentity).where(
                        OidcIdentity.issuer == issuer, OidcIdentity.subject == subject
                    )
                )
                if identity is not None:
                    user = session.get(User, identity.user_id)
                    identity.last_used_at = at
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
                        raise IdentityLinkedElsewhere(email)
                    session.add(
                        OidcIdentity(user_id=user.id, issuer=issuer, subject=subject, email=email)
                    )
                    session.flush()
                    linked = True
                if user is None:  # the foreign key cascades: an identity never outlives it
                    raise LookupError(f"identity {issuer} {subject} has no account")
                _add_device(session, user.id, device)
                account = _account(user)
        except IntegrityError:
            raise IdentityRace() from None
        return FederatedAccount(account, created=created, linked=linked)
