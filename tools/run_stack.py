"""`make run`: the whole Dropfile stack on one machine, each process with its name on its
log lines, stopped together on Ctrl-C (SIGINT or SIGTERM) and only then: once the stack is
up, a process that exits (a crash, a kill) is started again after a backoff that doubles
from 0.5 s to 30 s and starts over once the process has run for a minute.

Backends come from the environment or `.env` (CLOUD_DB_URI, CLOUD_RD_URI, AWS_*, S3_BUCKET,
SQS_QUEUE_URL). Each backend left unconfigured is replaced by an embedded engine
(tools/engines.py) keeping its data under `.dropfile/`. Without SQS, the event processor's
reconciler confirms uploads by asking storage."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import psycopg2
from dotenv import load_dotenv
from psycopg2 import sql

from tools.engines import Engine, EngineError, engines_needed, wait_ready
from tools.processes import (
    ChildProcess,
    ProcessError,
    http_ok,
    port_free,
    stop_all,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".dropfile"
COLORS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m", "\033[96m"]
RESET = "\033[0m"

SERVICES = [
    ("auth", [sys.executable, "-m", "services.auth.server"]),
    ("upload", [sys.executable, "-m", "services.upload.server"]),
    ("events", [sys.executable, "-m", "services.events.server"]),
    ("gateway", [sys.executable, "-m", "gateway"]),
]


def say(message: str) -> None:
    print(f"{'dropfile':>8} | {message}", flush=True)


class StartError(Exception):
    pass


def take_run_lock():
    """One `make run` per folder: a second one says so instead of failing on ports."""
    STATE_DIR.mkdir(exist_ok=True)
    handle = open(STATE_DIR / "run.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise StartError(
            f"Dropfile is already running from this folder (pid "
            f"{handle.read().strip() or '?'}); stop it with Ctrl-C first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


# Restart backoff: the first restart after RESTART_DELAY_MIN, each quick crash again doubles
# it up to RESTART_DELAY_MAX; a process that ran STABLE_AFTER seconds starts over.
RESTART_DELAY_MIN = 0.5
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 60.0


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def next_delay(previous: float | None, ran_for: float) -> float:
    """The wait before a restart, given the last wait (None: never restarted) and how long
    the process ran this time."""
    if previous is None or ran_for >= STABLE_AFTER:
        return RESTART_DELAY_MIN
    return min(previous * 2, RESTART_DELAY_MAX)


class Child:
    """One supervised process: how to start it and its restart state."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        user: str | None,
        stop_signal: int,
        color: str,
        before_start: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        label = f"{color}{name:>8}{RESET if color else ''}"
        self.process = ChildProcess(
            name,
            argv,
            cwd=ROOT,
            user=user,
            stop_signal=stop_signal,
            on_line=lambda line: print(f"{label} | {line.rstrip()}", flush=True),
        )
        self.before_start = before_start  # e.g. an engine's prepare(), run before restarts
        self.delay: float | None = None
        self.restart_at: float | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.popen

    @property
    def started_at(self) -> float:
        return self.process.started_at

    def spawn(self) -> None:
        self.process.start()


class Children:
    """Child processes whose output is relayed line by line under their name, restarted
    with backoff once `supervise` is called for them."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        before_restart: Callable[[], None] | None = None,
    ) -> subprocess.Popen[bytes]:
        color = COLORS[len(self.children) % len(COLORS)] if sys.stdout.isatty() else ""
        child = Child(
            name, argv, user=user, stop_signal=stop_signal, color=color, before_start=before_restart
        )
        child.spawn()
        self.children.append(child)
        assert child.proc is not None
        return child.proc

    def first_exited(self) -> tuple[str, int] | None:
        for child in self.children:
            code = child.process.returncode
            if child.proc is not None and code is not None:
                return child.name, code
        return None

    def supervise(self) -> None:
        """One round: schedules a restart for each child that exited, and starts those
        whose wait is over."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is None:
                code = child.process.returncode
                if code is not None:
                    # What it left behind (workers, backends) would hold its ports.
                    child.process.signal(signal.SIGKILL)
                    self._schedule_restart(
                        child, now, f"{describe_exit(code)} after {now - child.started_at:.1f} s"
                    )
            elif now >= child.restart_at:
                child.restart_at = None
                try:
                    if child.before_start:
                        child.before_start()
                    child.spawn()
                    say(f"{child.name} restarted (pid {child.process.pid})")
                except (OSError, EngineError) as exc:
                    child.process.started_at = now  # a failure at once: the next wait is longer
                    self._schedule_restart(child, now, f"could not be restarted: {exc}")

    @staticmethod
    def _schedule_restart(child: Child, now: float, what: str) -> None:
        child.delay = next_delay(child.delay, now - child.started_at)
        child.restart_at = now + child.delay
        say(f"{child.name} {what}; restarting it in {child.delay:g} s")

    def stop(self, first: set[str], timeout: float = 30.0) -> None:
        """Stops the children named in `first` (the services), then the rest (the engines
        they use); each batch is signalled at once and then awaited."""

        def killing(process: ChildProcess) -> None:
            say(f"{process.name} did not stop within {timeout:.0f} s; killing it")

        started = [c.process for c in self.children if c.proc is not None]
        for batch in (
            [p for p in started if p.name in first],
            [p for p in started if p.name not in first],
        ):
            stop_all(batch, timeout=timeout, on_kill=killing)


def wait_for_http(url: str, timeout: float, children: Children) -> bool:
    try:
        wait_until(
            lambda: http_ok(url, timeout=1),
            timeout=timeout,
            what=url,
            interval=0.2,
            alive=lambda: children.first_exited() is None,
        )
    except ProcessError:
        return False
    return True


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
        raise StartError(
            f"cannot reach PostgreSQL at {parsed.hostname}:{parsed.port or 5432}: "
            f"{str(exc).strip().splitlines()[0]} (check CLOUD_DB_URI)"
        ) from None
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            say(f"created database {name}")
    conn.close()


def run_step(name: str, argv: list[str]) -> None:
    result = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise StartError(f"{name} failed (exit {result.returncode})")


def service_ports() -> dict[str, int]:
    return {
        "gateway": int(os.environ.get("DROPFILE_HTTP_PORT", "8080")),
        "auth": int(os.environ.get("AUTH_GRPC_PORT", "50051")),
        "upload": int(os.environ.get("UPLOAD_GRPC_PORT", "50052")),
        "events": int(os.environ.get("EVENTS_GRPC_PORT", "50053")),
    }


def check_ports(ports: dict[str, int], engines: list[Engine]) -> None:
    busy = [f"{name} {port}" for name, port in ports.items() if not port_free(port)]
    busy += [
        f"{engine.name} {port}"
        for engine in engines
        for port in engine.ports
        if not port_free(port)
    ]
    if busy:
        raise StartError(
            f"ports in use: {', '.join(busy)}. Stop what holds them (is another Dropfile "
            "running from another folder?), or set DROPFILE_HTTP_PORT / AUTH_GRPC_PORT / "
            "UPLOAD_GRPC_PORT / EVENTS_GRPC_PORT, or configure that backend in .env"
        )


def start_stack(children: Children) -> str:
    load_dotenv(ROOT / ".env")
    engines = engines_needed(dict(os.environ), STATE_DIR)
    ports = service_ports()
    check_ports(ports, engines)
    for name, port in ports.items():
        if name != "gateway":
            os.environ.setdefault(f"{name.upper()}_SERVICE_ADDR", f"127.0.0.1:{port}")
    for engine in engines:
        engine.prepare()
        proc = children.start(
            engine.name,
            engine.argv,
            user=engine.user,
            stop_signal=engine.stop_signal,
            before_restart=engine.prepare,
        )
        wait_ready(engine, timeout=60, alive=lambda p=proc: p.poll() is None)
        os.environ.update(engine.env)
        say(f"{engine.name} (embedded) is ready")
    ensure_database(os.environ.get("CLOUD_DB_URI", "postgresql://postgres@127.0.0.1:5432/dropfile"))
    run_step("database migration", [sys.executable, "-m", "alembic", "upgrade", "head"])
    run_step("storage setup", [sys.executable, "-m", "services.setup"])
    # glibc keeps one malloc arena per worker thread; two bound the services' memory.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    # Every process, auth included (its sign-in limits), has CLOUD_RD_URI: from the
    # environment or .env, or the embedded Valkey's set above. Every browser here is
    # 127.0.0.1, whose sign-ups the embedded Valkey counts across restarts: a per-address
    # limit would only stop the developer.
    os.environ.setdefault("SIGNUP_PER_ADDRESS", "100000")
    for name, argv in SERVICES:
        children.start(name, argv)
    url = f"http://127.0.0.1:{ports['gateway']}"
    if not wait_for_http(f"{url}/readyz", 60, children):
        exited = children.first_exited()
        raise StartError(
            f"{exited[0]} exited with code {exited[1]}"
            if exited
            else "the stack did not become ready within 60 s"
        )
    return url


def main() -> None:
    os.chdir(ROOT)
    try:
        lock = take_run_lock()  # noqa: F841 - held for the life of the process
    except StartError as exc:
        print(f"dropfile: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    children = Children()
    stopping = threading.Event()
    started = threading.Event()

    def on_signal(*_):
        stopping.set()
        if not started.is_set():
            raise KeyboardInterrupt  # interrupt a start that is still waiting

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        url = start_stack(children)
        started.set()
        say(f"Dropfile is running at {url} (API docs: {url}/docs). Ctrl-C stops it.")
        say(f"CLI: .venv/bin/dropfile --server {url} signup")
        while not stopping.is_set():
            children.supervise()
            stopping.wait(0.2)
    except (StartError, EngineError) as exc:
        print(f"dropfile: {exc}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        say("stopping...")
        children.stop(first={name for name, _ in SERVICES})
        say("stopped")
    raise SystemExit(code)


if __name__ == "__main__":
    main()
