"""`python -m gateway` as deployed: settings from the environment, JSON logs with request
ids, and a clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None


def test_python_m_gateway_serves_until_sigterm(gateway_settings, tmp_path):
    port = _free_port()
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
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: process.poll() is not None or _get(f"{base}/healthz"),
            timeout=30,
            what="python -m gateway to answer /healthz",
        )
        assert process.poll() is None, process.communicate()[1]
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200, ready.text
        assert "server" not in ready.headers  # no version advertising
        refused = httpx.get(
            f"{base}/api/auth/authenticate", headers={"X-Request-ID": "proc-test-1"}
        )
        assert refused.status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM), stderr
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
