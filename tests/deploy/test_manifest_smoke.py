"""The kind overlay, run on this machine: the wiring the manifests describe works.

The rendered overlay's SeaweedFS StatefulSet, migration Job, setup Job, the auth and upload
init containers and the four Deployments' containers run as local processes, each with its
command and exactly its pod's environment (ConfigMap and Secret references resolved from the
rendered objects; the JWT key pair that scripts/kind-up.sh creates is made here). SeaweedFS
runs its container's command line with the `weed` of the same version, its identities from
the rendered Secret. Only addresses are made local (tests/deploy/local_stack.py): free
ports, 127.0.0.1, a fresh database, a Redis database of this run, and forwarders in place
of kind's published host ports. Then one upload goes through the gateway as a browser on the
host does it (v1 API, parts PUT to presigned URLs that SeaweedFS checks), the event
processor's reconciler confirms it by asking storage (kind has no queue), the bytes come
back, every process's /metrics counted it, a request id sent to the gateway is in the logs
of every service the call reached, and SIGTERM stops everything cleanly."""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import tempfile
import time
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg2
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from services.auth.throttle import sign_up_key
from tests.conftest import PG_ADMIN_URL, wait_until

from .local_stack import (
    LOCAL_HOST,
    VENV_BIN,
    LocalProcess,
    app_directory,
    container_argv,
    container_env,
    local_store_argv,
    plan_addresses,
    publish_node_ports,
    run_to_completion,
    wait_for_http,
)

pytestmark = pytest.mark.e2e

SERVICES = ["auth", "upload", "events", "gateway"]  # started in this order
PART_SIZE = 5 * 1024 * 1024  # PART_SIZE_BYTES' default: the kind overlay does not set it
STOP_TIMEOUT = 60


@pytest.fixture
def smoke_database():
    """An empty database: the migration Job has to create the schema."""
    name = f"dropfile_smoke_{secrets.token_hex(4)}"
    admin = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def started(tmp_path):
    """Processes started by the test, killed at the end if still running."""
    processes: list[LocalProcess] = []
    yield processes
    for process in processes:
        process.kill()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of sample `name` with these labels in a /metrics page; fails if absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    pytest.fail(f"/metrics has no {name}{labels or ''}")


def scrape(port: int) -> str:
    response = httpx.get(f"http://{LOCAL_HOST}:{port}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return response.text


def session_cookie_header(response: httpx.Response) -> str:
    """The session cookies a browser would send back. The pods run in production mode, so
    the cookies are Secure: a browser keeps them for HTTPS (the kind cluster sits behind
    no TLS, a real one behind an Ingress that has it); here they are sent explicitly."""
    jar = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    assert {"access_token", "refresh_token", "device_id"} <= set(jar)
    assert all(jar[name]["secure"] for name in jar), "production cookies must be Secure"
    return "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())


def ok(response: httpx.Response) -> dict:
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    return response.json()


def logged_request_ids(process: LocalProcess) -> set[str]:
    return {entry["request_id"] for entry in process.entries() if entry.get("request_id")}


@pytest.fixture
def short_dir():
    """A folder with a short path: SeaweedFS puts Unix sockets in its /tmp mount, and a
    socket's path has at most 107 bytes."""
    folder = tempfile.mkdtemp(prefix="df-sw-")
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def start_seaweedfs(kind, root: Path, log_dir: Path, started) -> int:
    """The StatefulSet's container as a local process; returns its S3 port here."""
    workload = kind.workload("StatefulSet", "seaweedfs")
    (container,) = workload.containers
    argv, ports = local_store_argv(kind, workload, container, binary=VENV_BIN / "weed", root=root)
    store = LocalProcess(
        "seaweedfs", argv, {"PATH": "/usr/bin:/bin", "HOME": str(root)}, root, log_dir
    )
    started.append(store)
    s3_port = ports[workload.container_ports()["s3"]]
    readiness = container["readinessProbe"]["httpGet"]["path"]
    wait_for_http(f"http://{LOCAL_HOST}:{s3_port}{readiness}", [store], timeout=90)
    return s3_port


def test_the_kind_overlay_runs_an_upload_end_to_end(
    rendered, smoke_database, redis_url, key_pair, tmp_path, short_dir, started
):
    kind = rendered["kind"]
    private_pem, public_pem = key_pair
    app_dir = app_directory(tmp_path)
    # The overlay limits sign-ups per client address, and every test of this run signs up
    # from 127.0.0.1 into the same Redis database: this stack starts with none counted.
    redis.Redis.from_url(redis_url).delete(sign_up_key(LOCAL_HOST))
    (tmp_path / "logs").mkdir()

    s3_port = start_seaweedfs(kind, short_dir, tmp_path / "logs", started)
    addresses = plan_addresses(
        kind,
        run_here=SERVICES,
        external={"seaweedfs": s3_port},
        stores={"postgres": smoke_database, "redis": redis_url},
    )
    proxies = publish_node_ports(kind, addresses)
    try:
        _run_the_overlay(kind, addresses, app_dir, tmp_path, started, private_pem, public_pem)
    finally:
        for proxy in proxies:
            proxy.close()


def run_job(start, workload, container, timeout: float) -> None:
    """A Job's container to completion, run again after a failure as the Job controller
    does, up to its backoffLimit (setup's waits for storage that is still starting)."""
    attempts = workload.obj["spec"].get("backoffLimit", 6) + 1
    for attempt in range(1, attempts + 1):
        name = container["name"] if attempt == 1 else f"{container['name']}-{attempt}"
        process = start(workload, container, name)
        if attempt == attempts or process.wait(timeout) == 0:
            run_to_completion(process, timeout)
            return
        time.sleep(min(2 ** (attempt - 1), 10))


def _run_the_overlay(kind, addresses, app_dir, tmp_path, started, private_pem, public_pem):
    external_secrets = {"PRIVATE_KEY": private_pem, "PUBLIC_KEY": public_pem}
    home = tmp_path / "home"  # does not exist, like the image's /nonexistent
    names = "|".join(re.escape(s["metadata"]["name"]) for s in kind.of_kind("Service"))
    in_cluster_address = re.compile(rf"(^|[/@,])({names})(\.[\w.-]+)?:\d")

    def start(workload, container, name=None) -> LocalProcess:
        env = container_env(
            kind, workload, container, addresses, external_secrets=external_secrets, home=home
        )
        for variable, value in env.items():  # every in-cluster address was made local
            assert not in_cluster_address.search(value), (
                f"{workload.name}: {variable}={value} still names an in-cluster Service"
            )
        process = LocalProcess(
            name or container["name"],
            container_argv(container, env),
            env,
            app_dir,
            tmp_path / "logs",
        )
        started.append(process)
        return process

    # The Jobs: the schema, then the bucket and its CORS and lifecycle rules.
    for job in ("migrate", "setup"):
        workload = kind.workload("Job", job)
        for container in workload.containers:
            run_job(start, workload, container, timeout=120)

    services = {}
    for name in SERVICES:
        workload = kind.workload("Deployment", name)
        for init in workload.init_containers:  # auth and upload wait for the schema
            run_to_completion(start(workload, init, f"{name}-{init['name']}"), timeout=60)
        (container,) = workload.containers
        services[name] = start(workload, container)

    def local_port(name: str, port_name: str) -> int:
        container_port = kind.workload("Deployment", name).container_ports()[port_name]
        return addresses.local_port_of(name, container_port)

    # The host's view, as kind publishes it: the gateway on localhost:8080, SeaweedFS on
    # :5000.
    gateway_url = f"http://{LOCAL_HOST}:{addresses.published[8080]}"
    storage_netloc = f"{LOCAL_HOST}:{addresses.published[5000]}"
    readiness = kind.workload("Deployment", "gateway").containers[0]["readinessProbe"]
    wait_for_http(gateway_url + readiness["httpGet"]["path"], list(services.values()), timeout=120)

    upload = _upload_one_file(gateway_url, storage_netloc)
    assert "SQS_QUEUE_URL" not in services["events"].env
    _check_metrics(services, local_port, gateway_url, upload)
    _check_request_ids(services, upload)

    for name in reversed(SERVICES):
        status = services[name].terminate(STOP_TIMEOUT)
        if name == "gateway":
            # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
            assert status in (0, -signal.SIGTERM), services[name].tail()
            assert any(
                e["msg"].startswith("Application shutdown complete")
                for e in services[name].entries()
            ), services[name].tail()
        else:
            assert status == 0, f"{name} exited with {status}:\n{services[name].tail()}"
            assert any(e["msg"] == "stopped" for e in services[name].entries()), name
    for process in started:
        problems = [e for e in process.entries() if e.get("level") in ("ERROR", "CRITICAL")]
        assert not problems, f"{process.name} logged errors: {problems}"
        assert "Traceback" not in process.output(), f"{process.name}:\n{process.tail()}"


def _upload_one_file(gateway_url: str, storage_netloc: str) -> dict:
    """Sign up, upload a two-part file through presigned URLs, complete, wait for the
    storage event to confirm it, download it. Returns what the checks need."""
    signup_request_id = f"smoke-signup-{secrets.token_hex(6)}"
    complete_request_id = f"smoke-complete-{secrets.token_hex(6)}"
    client = httpx.Client(base_url=gateway_url, timeout=60)
    signup = client.post(
        "/api/auth/signup",
        headers={"X-Request-ID": signup_request_id},
        json={
            "user": {
                "email": f"smoke-{uuid.uuid4().hex[:10]}@example.com",
                "name": "Smoke",
                "password": "correct horse battery",
            }
        },
    )
    ok(signup)
    assert signup.headers["x-request-id"] == signup_request_id
    client.headers["Cookie"] = session_cookie_header(signup)

    data = secrets.token_bytes(PART_SIZE + 54_321)
    parts = [data[:PART_SIZE], data[PART_SIZE:]]
    file_id = str(uuid.uuid4())
    started = ok(
        client.post(
            "/api/files/get-upload-urls",
            json={
                "file_id": file_id,
                "file_name": "smoke.bin",
                "file_type": "application/octet-stream",
                "file_size": str(len(data)),
            },
        )
    )
    urls = started["presignedUrls"]
    assert len(urls) == len(parts)
    for url in urls:  # signed for S3_PUBLIC_ENDPOINT_URL: the host's view of SeaweedFS
        assert urlsplit(url).netloc == storage_netloc, url
    etags = []
    for url, part in zip(urls, parts):
        put = httpx.put(url, content=part, timeout=120)
        assert put.status_code == 200, put.text
        etags.append(put.headers["ETag"])
    for index, (part, etag) in enumerate(zip(parts, etags)):
        ok(
            client.post(
                "/api/files/record-chunk",
                json={
                    "file_id": file_id,
                    "chunk_index": index,
                    "size": str(len(part)),
                    "etag": etag.strip('"'),
                },
            )
        )
    completed = client.post(
        "/api/files/complete-upload",
        headers={"X-Request-ID": complete_request_id},
        json={
            "uploadId": started["uploadId"],
            "fileId": file_id,
            "parts": [
                {"ETag": etag, "PartNumber": number} for number, etag in enumerate(etags, start=1)
            ],
        },
    )
    ok(completed)
    assert completed.headers["x-request-id"] == complete_request_id

    def entry():
        files = ok(client.get("/api/files/list"))["files"]
        return next((f for f in files if f["fileId"] == file_id), None)

    wait_until(
        lambda: (entry() or {}).get("status") == "UPLOADED",
        timeout=60,
        interval=0.25,
        what="the reconciler to confirm the upload",
    )
    download = ok(client.post("/api/files/get-download-url", json={"s3_key": entry()["s3Key"]}))
    assert urlsplit(download["url"]).netloc == storage_netloc
    fetched = httpx.get(download["url"], timeout=120)
    assert fetched.status_code == 200
    assert fetched.content == data
    client.close()
    return {
        "size": len(data),
        "parts": len(parts),
        "signup_request_id": signup_request_id,
        "complete_request_id": complete_request_id,
        "file_id": file_id,
    }


def _check_metrics(services, local_port, gateway_url, upload) -> None:
    grpc_requests = "dropfile_grpc_requests_total"
    auth = scrape(local_port("auth", "metrics"))
    assert (
        metric(
            auth, grpc_requests, service="dropfile.auth.v1.AuthService", method="SignUp", code="OK"
        )
        == 1
    )

    uploads = scrape(local_port("upload", "metrics"))
    user_rpcs = {"InitiateUpload": 1, "CompleteUpload": 1, "GetDownloadUrl": 1}
    for method, count in user_rpcs.items():
        assert (
            metric(
                uploads,
                grpc_requests,
                service="dropfile.upload.v1.UploadService",
                method=method,
                code="OK",
            )
            == count
        ), method
        assert (
            metric(
                uploads,
                "dropfile_grpc_request_duration_seconds_count",
                service="dropfile.upload.v1.UploadService",
                method=method,
            )
            == count
        )
    # The gateway records parts in RecordParts calls, several parts per call when they
    # arrive together.
    assert (
        1
        <= metric(
            uploads,
            grpc_requests,
            service="dropfile.upload.v1.UploadService",
            method="RecordParts",
            code="OK",
        )
        <= upload["parts"]
    )
    assert metric(uploads, "dropfile_uploads_initiated_total") == 1
    assert metric(uploads, "dropfile_upload_parts_recorded_total") == upload["parts"]
    assert metric(uploads, "dropfile_upload_bytes_recorded_total") == upload["size"]
    assert metric(uploads, "dropfile_uploads_completed_total") == 1
    assert metric(uploads, "dropfile_uploads_confirmed_total") == 1
    assert metric(uploads, "dropfile_event_lag_seconds_count") == 1

    # No queue: the reconciler found the completed upload in storage and confirmed it, once
    # (a later round finds nothing pending), and events received no message.
    def reconciled_uploads() -> list[dict]:
        return [e for e in services["events"].entries() if e["msg"] == "reconciled upload"]

    # The file reads UPLOADED once upload committed; events logs the outcome just after.
    wait_until(lambda: reconciled_uploads(), timeout=10, what="the reconciler's log line")
    reconciled = reconciled_uploads()
    assert [e["outcome"] for e in reconciled].count("confirmed") == 1, reconciled
    assert all(e["file_id"] == upload["file_id"] for e in reconciled), reconciled
    events = scrape(local_port("events", "metrics"))
    assert "dropfile_queue_messages_total{" not in events
    uploads = scrape(local_port("upload", "metrics"))
    internal = "dropfile.upload.v1.UploadInternalService"
    assert metric(
        uploads, grpc_requests, service=internal, method="ConfirmUpload", code="OK"
    ) == len(reconciled)
    assert (
        metric(
            uploads, grpc_requests, service=internal, method="ListPendingConfirmations", code="OK"
        )
        >= 1
    )

    gateway = scrape(local_port("gateway", "metrics"))
    routes = {
        ("POST", "/api/auth/signup"): 1,
        ("POST", "/api/files/get-upload-urls"): 1,
        ("POST", "/api/files/record-chunk"): upload["parts"],
        ("POST", "/api/files/complete-upload"): 1,
        ("POST", "/api/files/get-download-url"): 1,
    }
    for (method, route), count in routes.items():
        assert (
            metric(
                gateway, "dropfile_http_requests_total", method=method, route=route, status="200"
            )
            == count
        ), route
        assert (
            metric(
                gateway, "dropfile_http_request_duration_seconds_count", method=method, route=route
            )
            == count
        ), route
    assert (
        metric(gateway, "dropfile_http_requests_total", method="GET", route="/readyz", status="200")
        >= 1
    )
    # Metrics stay off the public port: /metrics there is not the registry.
    public = httpx.get(f"{gateway_url}/metrics", timeout=5)
    assert public.status_code == 404
    assert "dropfile_http_requests_total" not in public.text


def _check_request_ids(services, upload) -> None:
    signup_id, complete_id = upload["signup_request_id"], upload["complete_request_id"]
    # Sign-up went through the gateway to auth; completion through the gateway to upload.
    touched = {signup_id: {"gateway", "auth"}, complete_id: {"gateway", "upload"}}
    for request_id, reached in touched.items():
        for name, process in services.items():
            seen = request_id in logged_request_ids(process)
            assert seen == (name in reached), (
                f"request id {request_id} {'missing from' if not seen else 'unexpected in'} "
                f"the logs of {name}:\n{process.tail(20)}"
            )
    gateway_lines = [e for e in services["gateway"].entries() if e.get("request_id") == complete_id]
    assert any(
        e.get("path") == "/api/files/complete-upload" and e.get("status") == 200
        for e in gateway_lines
    ), gateway_lines
    assert any(
        e.get("method") == "/dropfile.upload.v1.UploadService/CompleteUpload"
        and e.get("code") == "OK"
        for e in services["upload"].entries()
        if e.get("request_id") == complete_id
    )

    # The reconciler's request id names the file it confirmed; it reaches upload with
    # ConfirmUpload, whose log line carries it.
    confirmed = [
        e
        for e in services["events"].entries()
        if e.get("outcome") == "confirmed" and e.get("request_id")
    ]
    assert len(confirmed) == 1, services["events"].tail()
    request_id = confirmed[0]["request_id"]
    assert request_id == f"reconcile-{upload['file_id']}"
    assert any(
        e.get("method") == "/dropfile.upload.v1.UploadInternalService/ConfirmUpload"
        for e in services["upload"].entries()
        if e.get("request_id") == request_id
    )
    # Every RPC a service served came with a request id (the gateway's, or a service's).
    for name in ("auth", "upload", "events"):
        for e in services[name].entries():
            if e.get("logger") == "rpc.access":
                assert e.get("request_id"), f"{name}: an RPC without a request id: {e}"
