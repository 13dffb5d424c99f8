"""Each process loads only the libraries it uses (each of these costs a process ~10-25 MB of
resident memory), and a failure of a loaded library's server is still seen as transient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _loaded_after_importing(module: str) -> set[str]:
    """The top-level packages a fresh interpreter holds once `module` is imported."""
    code = (
        f"import json, sys; import {module}; "
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")])}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(
    "module,unused",
    [
        ("gateway.app", {"boto3", "botocore", "redis", "sqlalchemy"}),
        # Single sign-on's libraries load only when an issuer is configured.
        ("services.auth.server", {"boto3", "botocore", "redis", "httpx", "authlib", "joserfc"}),
        ("services.events.server", {"boto3", "sqlalchemy"}),
        ("services.upload.server", {"boto3"}),
    ],
)
def test_processes_do_not_load_libraries_they_do_not_use(module, unused):
    assert not _loaded_after_importing(module) & unused


def test_transient_failures_of_every_loaded_library_are_recognized():
    import botocore.exceptions
    import redis.exceptions
    import sqlalchemy.exc

    from services.common.transient import is_transient

    for transient in (
        redis.exceptions.ConnectionError(),
        redis.exceptions.TimeoutError(),
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3"),
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://s3"),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("gone")),
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("reset"), connection_invalidated=True),
        ConnectionRefusedError(),
    ):
        assert is_transient(transient), transient
    for lasting in (
        ValueError(),
        redis.exceptions.ResponseError(),
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate")),
    ):
        assert not is_transient(lasting), lasting
