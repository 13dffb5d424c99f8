"""Sign-up and sign-in as abuse leaves them: admitted to the hashing queue (or 503 at
once), counted against the attempt limits (or 429), and only then handed to Accounts, whose
rules are unchanged."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .accounts import Accounts, SessionTokens, normalize_email
from .passwords import PasswordHasher
from .store import AccountStore
from .throttle import AttemptThrottle
from .tokens import hash_refresh_token


@dataclass(frozen=True)
class DeviceProof:
    """The caller's current device session, as its cookies name it."""

    device_id: str
    refresh_token: str = field(repr=False)


def _device_of_account(store: AccountStore, email: str, proof: DeviceProof | None) -> str | None:
    """The device session's id when `proof` shows a valid session of `email`'s account
    (its current refresh token, not revoked, not expired); None otherwise."""
    if proof is None or not proof.device_id or not proof.refresh_token:
        return None
    try:
        session_id = uuid.UUID(proof.device_id)
    except ValueError:
        return None
    stored = store.live_refresh_token_hash(email=email, device_id=session_id, now=datetime.now(UTC))
    if stored is None or not hmac.compare_digest(stored, hash_refresh_token(proof.refresh_token)):
        return None
    return str(session_id)


class SignInGuard:
    def __init__(
        self,
        *,
        accounts: Accounts,
        hasher: PasswordHasher,
        store: AccountStore,
        throttle: AttemptThrottle,
    ) -> None:
        self._accounts = accounts
        self._hasher = hasher
        self._store = store
        self._throttle = throttle

    def sign_up(
        self, *, email: str, name: str, password: str, remember_me: bool, client_address: str
    ) -> tuple[str, SessionTokens]:
        with self._hasher.admission():
            self._throttle.admit_sign_up(address=client_address)
            return self._accounts.sign_up(
                email=email, name=name, password=password, remember_me=remember_me
            )

    def sign_in(
        self,
        *,
        email: str,
        password: str,
        remember_me: bool,
        client_address: str,
        device: DeviceProof | None = None,
    ) -> tuple[str, SessionTokens]:
        normalized = normalize_email(email)
        if not normalized or not password:  # refused as bad input, no password checked
            return self._accounts.sign_in(email=email, password=password, remember_me=remember_me)
        with self._hasher.admission():
            attempt = self._throttle.admit_sign_in(
                email=normalized,
                address=client_address,
                device_id=_device_of_account(self._store, normalized, device),
            )
            result = self._accounts.sign_in(email=email, password=password, remember_me=remember_me)
        self._throttle.sign_in_succeeded(attempt)
        return result
