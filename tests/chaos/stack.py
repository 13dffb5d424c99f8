"""The stack the chaos suite breaks: the engines `make run` starts (tools/engines.py:
PostgreSQL, Valkey, SeaweedFS) and the same four Dropfile processes (tools/run_stack.py's
SERVICES), on free ports with their data in a temporary folder, plus moto's SQS as the
queue of S3 events (SeaweedFS sends none; the suite sends them, duplicated and out of
order). Any process can be killed or restarted by name, and comes back with the same
command, environment and data."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from bench.stack import free_port
from tools.engines import Engine, postgres, seaweedfs, valkey
from tools.processes import (
    ChildProcess,
    ProcessError,
    grpc_serving,
    http_ok,
    stop_all,
)
from tools.run_stack import SERVICES

ROOT = Path(__file__).resolve().parents[2]
MOTO_ACCOUNT = "123456789012"
BUCKET = "dropfile-chaos"


class ChaosStackError(RuntimeError):
    pass


@dataclass
class Spec:
    """How to start one process again, exactly as it was started the first time."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    user: str | None = None
    stop_signal: int = signal.SIGTERM


@dataclass
class ChaosStack:
    service_env: dict[str, str] = field(default_factory=dict)
    specs: dict[str, Spec] = field(default_factory=dict)
    procs: dict[str, ChildProcess] = field(default_factory=dict)
    gateway_url: str = ""
    storage_url: str = ""  # SeaweedFS's S3 API, as the services reach it
    queue_url: str = ""
    s3_env: dict[str, str] = field(default_factory=dict)
    database_url: str = ""
    redis_url: str = ""
    state: Path | None = None

    # -- start -----------------------------------------------------------------------------

    def start(self, *, public_storage_url: callable) -> None:
        """`public_storage_url(storage_url)` returns where clients reach storage (a fault
        proxy in front of it)."""
        # Outside pytest's 0700 folders and /root: as root, PostgreSQL runs as `nobody`.
        self.state = Path(tempfile.mkdtemp(prefix="dropfile-chaos-", dir="/tmp"))
        self.state.chmod(0o755)
        (self.state / "logs").mkdir()
        os.chmod(self.state / "logs", 0o777)
        pg = postgres(self.state, port=free_port())
        rd = valkey(self.state, port=free_port())
        weed_ports = {
            name: free_port(twin_offset=10000)
            for name in ("master.port", "volume.port", "filer.port", "admin.port")
        }
        weed_ports.update({"s3.port.iceberg": free_port(), "s3.port.lance": free_port()})
        s3 = seaweedfs(self.state, s3_port=free_port(twin_offset=10000), other_ports=weed_ports)
        for engine in (pg, rd, s3):
            engine.prepare()
            self._add_engine(engine)
        self.database_url = pg.env["CLOUD_DB_URI"]
        self.redis_url = rd.env["CLOUD_RD_URI"]
        self.storage_url = s3.env["AWS_ENDPOINT_URL"]
        self.s3_env = {**s3.env, "S3_BUCKET": BUCKET}
        self._create_database()

        moto_port = free_port()
        moto_url = f"http://127.0.0.1:{moto_port}"
        self._add(
            Spec(
                "moto",
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                self._env(),
                ready=lambda: http_ok(f"{moto_url}/moto-api/"),
            )
        )
        self.queue_url = f"{moto_url}/{MOTO_ACCOUNT}/dropfile-chaos-events"
        self._run(
            "migrate",
            [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
            {"CLOUD_DB_URI": self.database_url},
        )
        self._run("setup", [sys.executable, "-m", "services.setup"], self.s3_env)
        self._create_queue(moto_url)

        ports = {name: free_port() for name, _ in SERVICES}
        addresses = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        self.gateway_url = f"http://127.0.0.1:{ports['gateway']}"
        common = {
            **self.s3_env,
            "CLOUD_DB_URI": self.database_url,
            "CLOUD_RD_URI": self.redis_url,
            "AUTH_SERVICE_ADDR": addresses["auth"],
            "UPLOAD_SERVICE_ADDR": addresses["upload"],
            "EVENTS_SERVICE_ADDR": addresses["events"],
            "AUTH_GRPC_PORT": str(ports["auth"]),
            "UPLOAD_GRPC_PORT": str(ports["upload"]),
            "EVENTS_GRPC_PORT": str(ports["events"]),
            "DROPFILE_HTTP_PORT": str(ports["gateway"]),
            "S3_PUBLIC_ENDPOINT_URL": public_storage_url(self.storage_url),
            # The S3 events the suite sends, and the reconciler asking storage (every
            # second, as under `make run`): both confirm through one ConfirmUpload.
            "SQS_QUEUE_URL": self.queue_url,
            "AWS_ENDPOINT_URL_SQS": moto_url,
            "SQS_WAIT_TIME_SECONDS": "1",
            "SQS_VISIBILITY_TIMEOUT_SECONDS": "5",
            "RECONCILE_INTERVAL_SECONDS": "1",
            "RECONCILE_GRACE_SECONDS": "0",
            "BCRYPT_ROUNDS": "10",
            **self.service_env,
        }
        for name, argv in SERVICES:
            port = ports[name]
            ready = (
                (lambda: http_ok(f"{self.gateway_url}/readyz"))
                if name == "gateway"
                else (lambda p=port: grpc_serving(f"127.0.0.1:{p}"))
            )
            self._add(Spec(name, argv, self._env(common), ready=ready))

    def service_env_for(self, name: str) -> dict[str, str]:
        """The environment `name` runs with (for a one-shot command run as it would)."""
        return dict(self.specs[name].env)

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                (
                    "AWS_",
                    "CLOUD_",
                    "SQS_",
                    "S3_",
                    "DROPFILE_",
                    "HTTP_PROXY",
                    "HTTPS_PROXY",
                    "http_proxy",
                    "https_proxy",
                )
            )
            and k not in ("PRIVATE_KEY", "PUBLIC_KEY", "SERVICE_TOKEN")
        }
        env.update(
            {
                "DROPFILE_ENV": "development",
                "PYTHONUNBUFFERED": "1",
                "MALLOC_ARENA_MAX": "2",
                "DROPFILE_KEYS_DIR": str(self.state / "keys"),
                "AWS_EC2_METADATA_DISABLED": "true",
                "NO_PROXY": "*",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            }
        )
        env.update(extra or {})
        return env

    def _add_engine(self, engine: Engine) -> None:
        self._add(
            Spec(
                engine.name,
                engine.argv,
                self._env(),
                ready=engine.ready,
                user=engine.user,
                stop_signal=engine.stop_signal,
            )
        )

    def _add(self, spec: Spec) -> None:
        self.specs[spec.name] = spec
        self.start_process(spec.name)

    def start_process(self, name: str, *, timeout: float = 90) -> float:
        """Starts `name` and waits until it is ready; returns how long that took."""
        spec = self.specs[name]
        started = time.monotonic()
        if name not in self.procs:
            self.procs[name] = ChildProcess(
                name,
                spec.argv,
                env=spec.env,
                cwd=self.state,
                log=self.state / "logs" / f"{name}.log",
                user=spec.user,
                stop_signal=spec.stop_signal,
            )
        process = self.procs[name].start()
        try:
            process.wait_ready(spec.ready, timeout=timeout)
        except ProcessError as exc:
            raise ChaosStackError(str(exc)) from None
        return time.monotonic() - started

    def _run(self, name: str, argv: list[str], extra: dict[str, str]) -> None:
        result = subprocess.run(
            argv, cwd=self.state, env=self._env(extra), capture_output=True, text=True, timeout=180
        )
        if result.returncode != 0:
            raise ChaosStackError(f"{name} failed: {result.stderr[-2000:]}")

    def _create_database(self) -> None:
        admin = self.database_url.rsplit("/", 1)[0] + "/postgres"
        conn = psycopg2.connect(admin, connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE dropfile")
        conn.close()

    def _create_queue(self, moto_url: str) -> None:
        from services.common.clients import aws_client

        sqs = aws_client("sqs", region="us-east-1", endpoint_url=moto_url)
        sqs.create_queue(QueueName="dropfile-chaos-events")

    def sqs(self):
        from services.common.clients import aws_client

        return aws_client("sqs", region="us-east-1", endpoint_url=self.queue_url.rsplit("/", 2)[0])

    def s3(self):
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.storage_url,
            region_name="us-east-1",
            aws_access_key_id=self.s3_env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.s3_env["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    # -- faults ----------------------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.procs[name].stop(sig=sig, timeout=60)

    def restart(self, name: str, *, sig: int | None = None, down_for: float = 0.0) -> float:
        """Stops `name` (SIGKILL unless told), waits `down_for`, starts it again; returns
        the seconds it was unavailable."""
        started = time.monotonic()
        self.kill(name, self.specs[name].stop_signal if sig is None else sig)
        time.sleep(down_for)
        self.start_process(name)
        return time.monotonic() - started

    def check_alive(self) -> None:
        for name, process in self.procs.items():
            if not process.running:
                raise ChaosStackError(
                    f"{name} exited with {process.returncode}: {self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.state / "logs" / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def logs(self, name: str) -> str:
        path = self.state / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- stop ------------------------------------------------------------------------------

    def stop(self) -> None:
        services = [name for name, _ in SERVICES]
        for batch in (services, [n for n in self.procs if n not in services]):
            stop_all([self.procs[n] for n in batch if n in self.procs], timeout=20)
        if self.state is not None:
            shutil.rmtree(self.state, ignore_errors=True)
