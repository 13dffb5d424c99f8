"""`make run`: the whole Dropfile stack on one machine, each process with its name on its
log lines, stopped together on Ctrl-C.

Backends come from the environment or `.env` (CLOUD_DB_URI, CLOUD_RD_URI, AWS_*, S3_BUCKET,
SQS_QUEUE_URL). When no S3 endpoint or AWS credentials are configured, a local moto server
provides S3 and SQS (in memory: its contents do not survive a restart)."""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psycopg2
from dotenv import load_dotenv
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".dropfile"
MOTO_PORT = 4566
COLORS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"

PROCESSES = [
    ("auth", [sys.executable, "-m", "services.auth.server"]),
    ("upload", [sys.executable, "-m", "services.upload.server"]),
    ("events", [sys.executable, "-m", "services.events.server"]),
    ("gateway", [sys.executable, "-m", "gateway"]),
]


def say(message: str) -> None:
    print(f"dropfile | {message}", flush=True)


def fail(message: str) -> None:
    print(f"dropfile | error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def take_run_lock():
    STATE_DIR.mkdir(exist_ok=True)
    handle = open(STATE_DIR / "run.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        fail(f"Dropfile is already running from this folder (pid {handle.read().strip()}); "
             "stop it with Ctrl-C first")
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class Children:
    """Child processes whose output is relayed line by line under their name."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        color = COLORS[len(self.procs) % len(COLORS)] if sys.stdout.isatty() else ""
        reset = RESET if color else ""
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True)

        def relay():
            for line in proc.stdout:
                print(f"{color}{name:>8}{reset} | {line.rstrip()}", flush=True)

        threading.Thread(target=relay, daemon=True).start()
        self.procs.append((name, proc))
        return proc

    def first_exited(self):
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self, timeout: float = 20.0) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for_http(url: str, timeout: float, children: Children) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if children.first_exited():
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def ensure_local_storage(children: Children) -> None:
    """Starts moto as the S3/SQS endpoint when nothing points at real storage."""
    configured = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    has_credentials = os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")
    if configured or has_credentials:
        return
    if not port_free(MOTO_PORT):
        fail(f"port {MOTO_PORT} (local S3/SQS) is in use; free it or set AWS_ENDPOINT_URL")
    endpoint = f"http://127.0.0.1:{MOTO_PORT}"
    os.environ.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
    })
    os.environ.setdefault("SQS_QUEUE_URL", f"{endpoint}/123456789012/dropfile-events")
    children.start("storage", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", str(MOTO_PORT)])
    if not wait_for_http(f"{endpoint}/moto-api/", 30, children):
        fail("the local S3/SQS server did not start")
    say(f"local S3 and SQS (moto, in memory) at {endpoint}")


def ensure_database(uri: str) -> None:
    """Creates the configured database on a local server when it does not exist yet."""
    parsed = urlparse(uri.replace("+psycopg2", ""))
    name = parsed.path.lstrip("/")
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1") or not name:
        return
    admin = parsed._replace(path="/postgres").geturl()
    try:
        conn = psycopg2.connect(admin, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        fail(f"cannot reach PostgreSQL at {parsed.hostname}:{parsed.port or 5432}: "
             f"{str(exc).strip().splitlines()[0]} (set CLOUD_DB_URI)")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            say(f"created database {name}")
    conn.close()


def run_step(name: str, argv: list[str]) -> None:
    result = subprocess.run(argv, cwd=ROOT)
    if result.returncode != 0:
        fail(f"{name} failed (exit {result.returncode})")


def main() -> None:
    os.chdir(ROOT)
    load_dotenv(ROOT / ".env")
    lock = take_run_lock()  # noqa: F841 - held for the life of the process
    http_port = int(os.environ.get("DROPFILE_HTTP_PORT", "8080"))
    ports = {"gateway": http_port,
             "auth": int(os.environ.get("AUTH_GRPC_PORT", "50051")),
             "upload": int(os.environ.get("UPLOAD_GRPC_PORT", "50052")),
             "events": int(os.environ.get("EVENTS_GRPC_PORT", "50053"))}
    busy = [f"{name} port {port}" for name, port in ports.items() if not port_free(port)]
    if busy:
        fail(f"in use: {', '.join(busy)}; stop what holds them or set "
             "DROPFILE_HTTP_PORT / AUTH_GRPC_PORT / UPLOAD_GRPC_PORT / EVENTS_GRPC_PORT")
    for name, port in ports.items():
        if name != "gateway":
            os.environ.setdefault(f"{name.upper()}_SERVICE_ADDR", f"127.0.0.1:{port}")

    children = Children()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        ensure_local_storage(children)
        ensure_database(os.environ.get("CLOUD_DB_URI",
                                       "postgresql://postgres@127.0.0.1:5432/dropfile"))
        run_step("database migration", [sys.executable, "-m", "alembic", "upgrade", "head"])
        run_step("storage setup", [sys.executable, "-m", "services.setup"])
        for name, argv in PROCESSES:
            children.start(name, argv)
        url = f"http://127.0.0.1:{http_port}"
        if not wait_for_http(f"{url}/readyz", 60, children):
            exited = children.first_exited()
            fail(f"{exited[0]} exited with code {exited[1]}" if exited
                 else "the stack did not become ready within 60 s")
        say(f"Dropfile is running at {url} (API docs: {url}/docs). Ctrl-C stops it.")
        while not stopping.is_set():
            exited = children.first_exited()
            if exited:
                say(f"{exited[0]} exited with code {exited[1]}; stopping everything")
                break
            stopping.wait(0.5)
    finally:
        say("stopping...")
        children.stop()
        say("stopped")


if __name__ == "__main__":
    main()
