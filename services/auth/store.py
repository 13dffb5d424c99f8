"""The auth service's PostgreSQL: accounts and device sessions (tables in models.py). Every
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

from .models import DeviceSession, User


class EmailTaken(Exception):
    """Another account has this email."""


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    email: str
    password_hash: str = field(repr=False)


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
