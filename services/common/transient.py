"""Which failures are a dependency being briefly unreachable, worth a retry."""
from __future__ import annotations

import sys

# By module: the exceptions of a library that mean its server is briefly unreachable.
# Looked up only in libraries the process has loaded (one it never imported cannot have
# raised): importing them just to name their exceptions would cost a process that uses
# none of some (auth: redis and botocore, ~10 MB; events: SQLAlchemy, ~10 MB).
_TRANSIENT_BY_MODULE = {
    "sqlalchemy.exc": ("OperationalError", "InterfaceError",
                       "TimeoutError"),  # TimeoutError: the pool is exhausted
    "redis.exceptions": ("ConnectionError", "TimeoutError"),
    "botocore.exceptions": ("EndpointConnectionError", "ConnectTimeoutError",
                            "ReadTimeoutError"),
}


def _transient_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError]
    for module_name, names in _TRANSIENT_BY_MODULE.items():
        module = sys.modules.get(module_name)
        if module is not None:
            found.extend(getattr(module, name) for name in names)
    return tuple(found)


def is_transient(exc: BaseException) -> bool:
    database_errors = sys.modules.get("sqlalchemy.exc")
    if database_errors is not None and isinstance(exc, database_errors.DBAPIError) \
            and exc.connection_invalidated:
        return True
    return isinstance(exc, _transient_types())
