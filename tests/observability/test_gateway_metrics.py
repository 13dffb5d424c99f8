"""The gateway's metrics: requests counted per route template (never per raw path), and
/metrics kept off the public HTTP port unless this is a development gateway without
METRICS_PORT. `python -m gateway` with METRICS_PORT serves them on that port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.settings import GatewaySettings
from tests.fixtures.gateway import serve_gateway
from tools.processes import ChildProcess, free_port, http_ok

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = "dropfile_http_requests_total"


def counted(method: str, route: str, status: str) -> float:
    return (
        REGISTRY.get_sample_value(REQUESTS, {"method": method, "route": route, "status": status})
        or 0.0
    )


def test_requests_are_counted_by_route_template(api_client, gateway_url):
    client = api_client()
    template = "/api/v2/files/{file_id}/part-urls"
    before = counted("POST", template, "401")
    file_id = f"metrics-{uuid.uuid4().hex}"
    response = client.post(
        f"/api/v2/files/{file_id}/part-urls", json={"first_part": 1, "last_part": 1}
    )
    assert response.status_code == 401  # no session: refused by the gateway itself
    assert counted("POST", template, "401") == before + 1
    latency = REGISTRY.get_sample_value(
        "dropfile_http_request_duration_seconds_count", {"method": "POST", "route": template}
    )
    assert latency and latency >= 1

    page = client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    assert f'route="{template}"' in page.text
    assert file_id not in page.text  # the raw path never becomes a label


def test_paths_no_route_matched_share_one_label(api_client):
    client = api_client()
    before = counted("POST", "<unmatched>", "404")
    assert client.post(f"/api/no-such-{uuid.uuid4().hex}").status_code == 404
    assert counted("POST", "<unmatched>", "404") == before + 1


@pytest.mark.parametrize(
    "overrides",
    [{"dropfile_env": "production"}, {"metrics_port": 9}],
    ids=["production", "metrics-port-set"],
)
def test_metrics_are_not_on_the_http_port(gateway_settings, overrides):
    settings = gateway_settings.model_copy(update=overrides)
    with serve_gateway(settings) as url:
        response = httpx.get(f"{url}/metrics", timeout=5)
        assert response.status_code == 404
        assert REQUESTS not in response.text
        # ...while requests are still counted.
        before = counted("GET", "/healthz", "200")
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert counted("GET", "/healthz", "200") == before + 1


def _env(**values: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
        **values,
    }


@pytest.mark.slow
def test_python_m_gateway_serves_metrics_on_metrics_port(gateway_settings, tmp_path):
    http_port, metrics_port = free_port(), free_port()
    env = _env(
        DROPFILE_ENV="development",
        DROPFILE_HTTP_PORT=str(http_port),
        METRICS_PORT=str(metrics_port),
        AUTH_SERVICE_ADDR=gateway_settings.auth_service_addr,
        UPLOAD_SERVICE_ADDR=gateway_settings.upload_service_addr,
        EVENTS_SERVICE_ADDR=gateway_settings.events_service_addr,
    )
    process = ChildProcess(
        "gateway", [sys.executable, "-m", "gateway"], cwd=tmp_path, env=env, log=tmp_path / "log"
    ).start()
    try:
        base = f"http://127.0.0.1:{http_port}"
        process.wait_ready(lambda: http_ok(f"{base}/readyz", timeout=3), timeout=30)
        assert httpx.post(f"{base}/api/auth/signin", json={}).status_code == 400
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scraped.status_code == 200
        assert (
            'dropfile_http_requests_total{method="POST",route="/api/auth/signin",status="400"} 1.0'
        ) in scraped.text
        assert 'route="/readyz",status="200"' in scraped.text
    finally:
        process.stop(timeout=30)


@pytest.mark.slow
def test_a_taken_metrics_port_stops_the_gateway(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _env(DROPFILE_HTTP_PORT=str(free_port()), METRICS_PORT=str(taken.getsockname()[1]))
        result = subprocess.run(
            [sys.executable, "-m", "gateway"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "metrics port" in result.stderr


def test_gateway_settings_validate_the_metrics_port():
    with pytest.raises(ValueError):
        GatewaySettings(_env_file=None, metrics_port=0)
