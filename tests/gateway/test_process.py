"""`python -m gateway` as deployed: settings from the environment, JSON logs with request
ids, and a clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tools.processes import ChildProcess, free_port, http_ok

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_gateway_serves_until_sigterm(gateway_settings, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
        "DROPFILE_ENV": "development",
        "LOG_LEVEL": "INFO",
        "DROPFILE_HTTP_HOST": "127.0.0.1",
        "DROPFILE_HTTP_PORT": str(port),
        "AUTH_SERVICE_ADDR": gateway_settings.auth_service_addr,
        "UPLOAD_SERVICE_ADDR": gateway_settings.upload_service_addr,
        "EVENTS_SERVICE_ADDR": gateway_settings.events_service_addr,
    }
    # Run away from the checkout so no .env file there is read.
    process = ChildProcess(
        "gateway", [sys.executable, "-m", "gateway"], cwd=tmp_path, env=env, log=tmp_path / "log"
    ).start()
    try:
        base = f"http://127.0.0.1:{port}"
        process.wait_ready(lambda: http_ok(f"{base}/healthz"), timeout=30)
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200, ready.text
        assert "server" not in ready.headers  # no version advertising
        refused = httpx.get(
            f"{base}/api/auth/authenticate", headers={"X-Request-ID": "proc-test-1"}
        )
        assert refused.status_code == 401
    finally:
        returncode = process.stop(timeout=30)
    stderr = process.log_text()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(
        entry.get("request_id") == "proc-test-1"
        and entry.get("path") == "/api/auth/authenticate"
        and entry.get("status") == 401
        and entry.get("service") == "gateway"
        for entry in entries
    ), stderr
    # Probes are logged at DEBUG only.
    assert not any(entry.get("path") == "/readyz" for entry in entries), stderr


def test_a_bad_setting_stops_the_process_with_a_clear_message(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
        "DROPFILE_HTTP_PORT": "not-a-port",
        "CORS_ORIGINS": "*",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "DROPFILE_HTTP_PORT" in result.stderr
