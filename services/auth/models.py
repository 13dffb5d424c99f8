"""Tables the auth service owns: users, their device sessions, and the identities at an
OpenID Connect issuer linked to them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, UniqueConstraint, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Stored lower-cased and stripped, so lookups are exact.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # None: the account was created by single sign-on and has no password (a password
    # sign-in is refused as any wrong password is).
    password_hash: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeviceSession(Base):
    """One signed-in device. Only a hash of its current refresh token is kept, and, for a
    short grace window after each rotation, a hash of the previous one with the current
    token sealed under it (tokens.seal_refresh_token): two tabs refreshing with the same
    token both get the same new one."""

    __tablename__ = "device_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    refresh_token_hash: Mapped[str] = mapped_column(String(64))
    previous_refresh_token_hash: Mapped[str | None] = mapped_column(String(64))
    refresh_token_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sealed_refresh_token: Mapped[str | None] = mapped_column(String(128))
    remember_me: Mapped[bool]
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (Index("ix_device_sessions_user_id", "user_id"),)


class OidcIdentity(Base):
    """An account at an OpenID Connect issuer, linked to a Dropfile user. Sign-ins find the
    user by (issuer, subject), never by email, once linked; a user has at most one
    identity per issuer."""

    __tablename__ = "oidc_identities"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The ID token's `iss` and `sub`, exactly as the issuer wrote them.
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(255))
    # The verified email the identity had when it was linked (for people reading the table).
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        UniqueConstraint("issuer", "subject", name="uq_oidc_identities_issuer_subject"),
        UniqueConstraint("user_id", "issuer", name="uq_oidc_identities_user_issuer"),
    )
