"""The auth service's own Prometheus series (served with the common ones: services/common/
metrics.py): every bcrypt hash or check run (a sign-in's check, a sign-up's hash), and the
sign-ins and sign-ups refused before one, by a limit on attempts or a full hashing queue."""

from __future__ import annotations

from prometheus_client import Counter

PASSWORD_HASHES = Counter(
    "dropfile_auth_password_hashes_total", "bcrypt operations run", ["operation"]
)  # hash, check
PASSWORD_HASHING_REFUSED = Counter(
    "dropfile_auth_hashing_queue_full_total",
    "Sign-ins and sign-ups refused because the hashing queue was full",
)
SIGN_IN_THROTTLED = Counter(
    "dropfile_auth_throttled_total",
    "Sign-ins and sign-ups refused by a limit on attempts",
    ["kind"],
)  # sign_in, sign_up
