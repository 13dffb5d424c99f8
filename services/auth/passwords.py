"""Password hashing with bcrypt. pyca/bcrypt releases the GIL while hashing, so hashes run
in parallel on the server's worker threads and never block an event loop."""
from __future__ import annotations

import bcrypt

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 72  # bcrypt ignores anything longer; refuse rather than truncate


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self._rounds = rounds
        # Compared against when the email is unknown, so both paths cost one bcrypt check
        # and response time does not reveal whether an account exists.
        self._decoy_hash = bcrypt.hashpw(b"decoy-password", bcrypt.gensalt(rounds))

    def hash(self, password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._rounds)).decode()

    def verify(self, password: str, password_hash: str | None) -> bool:
        candidate = password.encode()[:MAX_PASSWORD_BYTES]
        if password_hash is None:
            bcrypt.checkpw(candidate, self._decoy_hash)
            return False
        return bcrypt.checkpw(candidate, password_hash.encode())
