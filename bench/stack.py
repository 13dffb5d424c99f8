"""The stack the bench measures, started from nothing and stopped completely.

Two Dropfile stacks share one auth service, one PostgreSQL server and one Redis:
- the main stack (upload, events, gateway) stores files on the embedded SeaweedFS, as
  `make run` does; SeaweedFS sends no events, so the events service's reconciler confirms
  uploads by asking storage;
- the SQS stack (upload-sqs, events-sqs, gateway-sqs) stores files on moto's S3, which
  notifies moto's SQS, so uploads are confirmed by storage events.
Beside them run the floor of one REST-to-gRPC hop (bench/floor.py) and the WAN profile: a
third upload coordinator and gateway on the main stack's database and store (upload-wan,
gateway-wan) whose presigned URLs name a delaying proxy in front of SeaweedFS, and a second
proxy in front of gateway-wan (bench/wan_proxy.py, 20 ms round trip, 1 Gbit/s), so that a
client reaching both through the proxies sees storage and the API across a WAN.

Engines come from tools/engines.py (the ones `make run` uses) on free ports, with their
data in a temporary folder that is removed at the end. A PostgreSQL server or Redis named
in BENCH_PG_URL / BENCH_REDIS_URL is used instead of the embedded one (the smoke test uses
the test suite's). Every process's output goes to a log file under the output folder."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psycopg2
from psycopg2 import sql

from tools import processes
from tools.engines import SEAWEED_DEFAULT_PORTS, Engine, postgres, seaweedfs, valkey, wait_ready
from tools.processes import ChildProcess

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
V1_PART_SIZE = 5 * MIB
# S3 allows 10,000 parts: the largest file v1 (5 MiB parts) can take, ~48.8 GiB. The bench
# raises MAX_FILE_SIZE_BYTES to it so that the 10,000-URL initiation can be measured.
V1_MAX_FILE_SIZE = 10_000 * V1_PART_SIZE
# The per-user quota of the bench stack (the default, 100 GiB, is less than the 5 TiB file
# of the v2 initiation row).
BENCH_QUOTA = 8 * 1024**4
# moto's fixed account; its queue URLs are http://host:port/<account>/<name>.
MOTO_ACCOUNT = "123456789012"
# The Dropfile processes whose peak memory the bench reports.
DROPFILE_PROCESSES = (
    "auth",
    "upload",
    "events",
    "gateway",
    "upload-sqs",
    "events-sqs",
    "gateway-sqs",
    "upload-wan",
    "gateway-wan",
)
# The WAN profile's link: round trip and rate of each direction (bench/wan_proxy.py).
WAN_RTT_MS = 20.0
WAN_MBIT = 1000.0


class StackError(RuntimeError):
    pass


def free_port(*, twin_offset: int | None = None) -> int:
    """A free port on 127.0.0.1 (tools/processes.py), never one SeaweedFS opens by default
    for what the bench does not pin; with `twin_offset`, one whose port+offset is free too
    (SeaweedFS opens a gRPC twin at +10000 of each of its ports)."""
    return processes.free_port(twin_offset=twin_offset, avoid=SEAWEED_DEFAULT_PORTS)


@dataclass
class Process:
    """One of the stack's processes, its output in its log file."""

    child: ChildProcess
    dropfile: bool = False

    @property
    def name(self) -> str:
        return self.child.name

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        assert self.child.popen is not None
        return self.child.popen

    @property
    def log(self) -> Path:
        assert self.child.log is not None
        return self.child.log


@dataclass
class Endpoints:
    """Where everything listens, and the credentials a client of the stores needs."""

    gateway: str = ""
    gateway_sqs: str = ""
    upload_grpc: str = ""
    floor_http: str = ""
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "dropfile"
    moto_endpoint: str = ""
    moto_bucket: str = "dropfile-sqs"
    moto_queue_url: str = ""
    region: str = "us-east-1"
    # The WAN profile: gateway-wan and the store, each behind a delaying proxy.
    gateway_wan: str = ""
    s3_endpoint_wan: str = ""
    # The main stack's database (the listing section COPYs rows into it).
    db_main: str = ""


@dataclass
class BenchStack:
    out_dir: Path
    # Extra environment of the Dropfile processes (e.g. BCRYPT_ROUNDS for a quick run).
    service_env: dict[str, str] = field(default_factory=dict)
    endpoints: Endpoints = field(default_factory=Endpoints)
    processes: list[Process] = field(default_factory=list)
    # Every process's port, by name (the WAN section reaches gateway-wan without its proxy).
    ports: dict[str, int] = field(default_factory=dict)
    # The main stack's environment (Redis, database, store), for processes started later.
    main_env: dict[str, str] = field(default_factory=dict)
    _state: Path | None = None
    _created_databases: list[tuple[str, str]] = field(default_factory=list)

    # -- start -----------------------------------------------------------------------------

    def start(self) -> Endpoints:
        self.logs = self.out_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # Outside pytest's 0700 folders and /root: as root, PostgreSQL runs as `nobody`.
        self._state = Path(tempfile.mkdtemp(prefix="dropfile-bench-", dir="/tmp"))
        self._state.chmod(0o755)
        pg_admin, redis_url = self._start_engines()
        self._start_moto()
        db_main = self._create_database(pg_admin, "dropfile_bench")
        db_sqs = self._create_database(pg_admin, "dropfile_bench_sqs")
        self.endpoints.db_main = db_main
        self._run_steps(
            [
                (
                    "migrate",
                    ["-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
                    {"CLOUD_DB_URI": db},
                )
                for db in (db_main, db_sqs)
            ]
        )
        self._setup_storage()
        self._start_services(db_main, db_sqs, redis_url)
        return self.endpoints

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a child: this one's, less anything that would point a
        process at other backends, plus the bench's settings."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "CLOUD_", "SQS_", "S3_", "DROPFILE_"))
            and k
            not in (
                "PRIVATE_KEY",
                "PUBLIC_KEY",
                "SERVICE_TOKEN",
                "MAX_FILE_SIZE_BYTES",
                "USER_QUOTA_BYTES",
            )
        }
        env.update(
            {
                "DROPFILE_ENV": "development",
                "PYTHONUNBUFFERED": "1",
                # As the image and `make run` set it: bounds glibc's per-thread arenas.
                "MALLOC_ARENA_MAX": "2",
                "DROPFILE_KEYS_DIR": str(self._state / "keys"),
                "AWS_EC2_METADATA_DISABLED": "true",
                # The bench's own modules (floor, loadgen) run from the checkout.
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            }
        )
        env.update(self.service_env)
        env.update(extra or {})
        return env

    def _spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        dropfile: bool = False,
    ) -> Process:
        # cwd is the state folder: a developer's .env in the checkout must not leak in.
        child = ChildProcess(
            name,
            argv,
            env=env,
            cwd=self._state,
            log=self.logs / f"{name}.log",
            user=user,
            stop_signal=stop_signal,
        ).start()
        process = Process(child, dropfile)
        self.processes.append(process)
        return process

    def _start_engine(self, engine: Engine) -> None:
        engine.prepare()
        process = self._spawn(
            engine.name, engine.argv, self._env(), user=engine.user, stop_signal=engine.stop_signal
        )
        try:
            wait_ready(engine, timeout=90, alive=lambda: process.popen.poll() is None)
        except Exception as exc:
            raise StackError(f"{exc} (log: {process.log})") from None

    def _start_engines(self) -> tuple[str, str]:
        engines = []
        pg_admin = os.environ.get("BENCH_PG_URL")
        redis_url = os.environ.get("BENCH_REDIS_URL")
        if not pg_admin:
            engine = postgres(self._state, port=free_port())
            engines.append(engine)
            pg_admin = engine.env["CLOUD_DB_URI"].rsplit("/", 1)[0] + "/postgres"
        if not redis_url:
            engine = valkey(self._state, port=free_port())
            engines.append(engine)
            redis_url = engine.env["CLOUD_RD_URI"]
        weed_ports = {
            name: free_port(twin_offset=10000)
            for name in ("master.port", "volume.port", "filer.port", "admin.port")
        }
        weed_ports.update({"s3.port.iceberg": free_port(), "s3.port.lance": free_port()})
        weed = seaweedfs(self._state, s3_port=free_port(twin_offset=10000), other_ports=weed_ports)
        engines.append(weed)
        for engine in engines:
            self._start_engine(engine)
        self.endpoints.s3_endpoint = weed.env["AWS_ENDPOINT_URL"]
        self.endpoints.s3_access_key = weed.env["AWS_ACCESS_KEY_ID"]
        self.endpoints.s3_secret_key = weed.env["AWS_SECRET_ACCESS_KEY"]
        return pg_admin, redis_url

    def _start_moto(self) -> None:
        port = free_port()
        self._spawn(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            self._env(),
        )
        url = f"http://127.0.0.1:{port}"
        self._wait_http(f"{url}/moto-api/", "moto")
        self.endpoints.moto_endpoint = url
        self.endpoints.moto_queue_url = f"{url}/{MOTO_ACCOUNT}/dropfile-events"

    def _create_database(self, admin_url: str, prefix: str) -> str:
        name = f"{prefix}_{secrets.token_hex(3)}"
        conn = psycopg2.connect(admin_url, connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        self._created_databases.append((admin_url, name))
        return admin_url.rsplit("/", 1)[0] + f"/{name}"

    def _run_steps(self, steps: list[tuple[str, list[str], dict[str, str]]]) -> None:
        """One-shot commands, run side by side; each must succeed."""
        running = [
            (name, self._spawn(f"{name}-{index}", [sys.executable, *argv], self._env(extra)))
            for index, (name, argv, extra) in enumerate(steps)
        ]
        for name, process in running:
            if process.popen.wait(timeout=180) != 0:
                raise StackError(f"{name} failed; see {process.log}")
            self.processes.remove(process)

    def _setup_storage(self) -> None:
        e = self.endpoints
        self._run_steps(
            [
                ("setup-s3", ["-m", "services.setup"], self._s3_env()),
                (
                    "setup-sqs",
                    ["-m", "services.setup"],
                    {**self._moto_env(), "SQS_QUEUE_URL": e.moto_queue_url},
                ),
            ]
        )

    def _s3_env(self) -> dict[str, str]:
        e = self.endpoints
        return {
            "AWS_ENDPOINT_URL": e.s3_endpoint,
            "AWS_ACCESS_KEY_ID": e.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": e.s3_secret_key,
            "AWS_REGION": e.region,
            "S3_BUCKET": e.s3_bucket,
        }

    def _moto_env(self) -> dict[str, str]:
        e = self.endpoints
        return {
            "AWS_ENDPOINT_URL": e.moto_endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": e.region,
            "S3_BUCKET": e.moto_bucket,
        }

    def _start_services(self, db_main: str, db_sqs: str, redis_url: str) -> None:
        ports = {
            name: free_port()
            for name in (
                "auth",
                "upload",
                "events",
                "gateway",
                "upload-sqs",
                "events-sqs",
                "gateway-sqs",
                "floor-grpc",
                "floor-http",
                "upload-wan",
                "gateway-wan",
                "wan-storage",
                "wan-gateway",
            )
        }
        self.ports = ports
        python = sys.executable
        auth_addr = f"127.0.0.1:{ports['auth']}"
        common = {
            "CLOUD_RD_URI": redis_url,
            "MAX_FILE_SIZE_BYTES": str(V1_MAX_FILE_SIZE),
            # Room for the 5 TiB v2 initiation; the quota is still checked.
            "USER_QUOTA_BYTES": str(BENCH_QUOTA),
        }

        def gateway_env(upload: str, events: str) -> dict[str, str]:
            return {
                "AUTH_SERVICE_ADDR": auth_addr,
                "UPLOAD_SERVICE_ADDR": upload,
                "EVENTS_SERVICE_ADDR": events,
            }

        main = {**common, **self._s3_env(), "CLOUD_DB_URI": db_main}
        self.main_env = main
        sqs = {
            **common,
            **self._moto_env(),
            "CLOUD_DB_URI": db_sqs,
            "SQS_QUEUE_URL": self.endpoints.moto_queue_url,
            # A long poll returns as soon as a message arrives whatever its wait; a
            # short one only lets the poller stop quickly when the bench ends.
            "SQS_WAIT_TIME_SECONDS": "2",
        }
        upload, upload_sqs = (f"127.0.0.1:{ports['upload']}", f"127.0.0.1:{ports['upload-sqs']}")
        specs = [
            (
                "auth",
                ["-m", "services.auth.server"],
                {**main, "AUTH_GRPC_PORT": str(ports["auth"])},
            ),
            (
                "upload",
                ["-m", "services.upload.server"],
                {**main, "UPLOAD_GRPC_PORT": str(ports["upload"])},
            ),
            (
                "events",
                ["-m", "services.events.server"],
                {**main, "EVENTS_GRPC_PORT": str(ports["events"]), "UPLOAD_SERVICE_ADDR": upload},
            ),
            (
                "gateway",
                ["-m", "gateway"],
                {
                    "DROPFILE_HTTP_PORT": str(ports["gateway"]),
                    **gateway_env(upload, f"127.0.0.1:{ports['events']}"),
                },
            ),
            (
                "upload-sqs",
                ["-m", "services.upload.server"],
                {**sqs, "UPLOAD_GRPC_PORT": str(ports["upload-sqs"])},
            ),
            (
                "events-sqs",
                ["-m", "services.events.server"],
                {
                    **sqs,
                    "EVENTS_GRPC_PORT": str(ports["events-sqs"]),
                    "UPLOAD_SERVICE_ADDR": upload_sqs,
                },
            ),
            (
                "gateway-sqs",
                ["-m", "gateway"],
                {
                    "DROPFILE_HTTP_PORT": str(ports["gateway-sqs"]),
                    **gateway_env(upload_sqs, f"127.0.0.1:{ports['events-sqs']}"),
                },
            ),
            (
                "upload-wan",
                ["-m", "services.upload.server"],
                {
                    **main,
                    "UPLOAD_GRPC_PORT": str(ports["upload-wan"]),
                    "S3_PUBLIC_ENDPOINT_URL": f"http://127.0.0.1:{ports['wan-storage']}",
                },
            ),
            (
                "gateway-wan",
                ["-m", "gateway"],
                {
                    "DROPFILE_HTTP_PORT": str(ports["gateway-wan"]),
                    **gateway_env(
                        f"127.0.0.1:{ports['upload-wan']}", f"127.0.0.1:{ports['events']}"
                    ),
                },
            ),
        ]
        for name, argv, extra in specs:
            self._spawn(name, [python, *argv], self._env(extra), dropfile=True)
        storage_port = host_port(self.endpoints.s3_endpoint)[1]
        for name, target in (
            ("wan-storage", storage_port),
            ("wan-gateway", ports["gateway-wan"]),
        ):
            self._spawn(
                name,
                [
                    python,
                    "-m",
                    "bench.wan_proxy",
                    "--target",
                    f"127.0.0.1:{target}",
                    "--port",
                    str(ports[name]),
                    "--rtt-ms",
                    str(WAN_RTT_MS),
                    "--mbit",
                    str(WAN_MBIT),
                ],
                self._env(),
            )
        self._spawn(
            "floor-grpc",
            [python, "-m", "bench.floor", "grpc", str(ports["floor-grpc"])],
            self._env(),
        )
        self._spawn(
            "floor-http",
            [
                python,
                "-m",
                "bench.floor",
                "http",
                str(ports["floor-http"]),
                f"127.0.0.1:{ports['floor-grpc']}",
            ],
            self._env(),
        )
        e = self.endpoints
        e.gateway = f"http://127.0.0.1:{ports['gateway']}"
        e.gateway_sqs = f"http://127.0.0.1:{ports['gateway-sqs']}"
        e.upload_grpc = upload
        e.floor_http = f"http://127.0.0.1:{ports['floor-http']}"
        e.gateway_wan = f"http://127.0.0.1:{ports['wan-gateway']}"
        e.s3_endpoint_wan = f"http://127.0.0.1:{ports['wan-storage']}"
        for url, name in (
            (f"{e.gateway}/readyz", "gateway"),
            (f"{e.gateway_sqs}/readyz", "gateway-sqs"),
            (f"{e.gateway_wan}/readyz", "gateway-wan (through its proxy)"),
            (f"{e.floor_http}/healthz", "floor-http"),
        ):
            self._wait_http(url, name)

    def _wait_http(self, url: str, name: str, timeout: float = 90) -> None:
        try:
            processes.wait_until(
                lambda: processes.http_ok(url),
                timeout=timeout,
                what=f"{name} to answer {url}",
                alive=lambda: all(p.child.running for p in self.processes),
            )
        except processes.ProcessExited:
            self.check_alive()
            raise
        except processes.NotReady:
            raise StackError(f"{name} did not answer {url} within {timeout:.0f} s") from None

    # -- while running ---------------------------------------------------------------------

    def start_events_replica(self, name: str, env: dict[str, str]) -> str:
        """Another events process on the main stack (its Redis, store and coordinator)
        with `env` on top, for a section of its own; its address once it serves."""
        port = free_port()
        self.ports[name] = port
        extra = {
            **self.main_env,
            "EVENTS_GRPC_PORT": str(port),
            "UPLOAD_SERVICE_ADDR": self.endpoints.upload_grpc,
            **env,
        }
        process = self._spawn(
            name, [sys.executable, "-m", "services.events.server"], self._env(extra), dropfile=True
        )
        address = f"127.0.0.1:{port}"
        try:
            processes.wait_until(
                lambda: processes.grpc_serving(address, timeout=1),
                timeout=60,
                what=f"{name} serving at {address}",
                alive=lambda: process.popen.poll() is None,
            )
        except processes.ProcessExited:
            raise StackError(f"{name} exited; see {process.log}") from None
        except processes.NotReady:
            raise StackError(f"{name} did not serve within 60 s; see {process.log}") from None
        return address

    def start_gateway(self, name: str, events: str, env: dict[str, str]) -> str:
        """Another gateway on the main stack's auth and upload coordinator, relaying the
        events process at `events`, with `env` on top, for a section of its own; its base
        URL once it answers."""
        port = free_port()
        self.ports[name] = port
        extra = {
            "DROPFILE_HTTP_PORT": str(port),
            "AUTH_SERVICE_ADDR": f"127.0.0.1:{self.ports['auth']}",
            "UPLOAD_SERVICE_ADDR": self.endpoints.upload_grpc,
            "EVENTS_SERVICE_ADDR": events,
            **env,
        }
        process = self._spawn(
            name, [sys.executable, "-m", "gateway"], self._env(extra), dropfile=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            processes.wait_until(
                lambda: processes.http_ok(f"{url}/healthz", timeout=1),
                timeout=60,
                what=f"{name} answering at {url}",
                alive=lambda: process.popen.poll() is None,
            )
        except processes.ProcessExited:
            raise StackError(f"{name} exited; see {process.log}") from None
        except processes.NotReady:
            raise StackError(f"{name} did not answer within 60 s; see {process.log}") from None
        return url

    def stop_process(self, name: str) -> None:
        """Stops one process started by the stack (its stop signal, then SIGKILL to its
        group after 20 s)."""
        for process in [p for p in self.processes if p.name == name]:
            process.child.stop(timeout=20)
            self.processes.remove(process)

    @property
    def state_folder(self) -> Path | None:
        """The temporary folder of the engines' data (removed by stop())."""
        return self._state

    def check_alive(self) -> None:
        for process in self.processes:
            if process.popen.poll() is not None:
                raise StackError(
                    f"{process.name} exited with code {process.popen.returncode}; see {process.log}"
                )

    def peak_rss_bytes(self) -> dict[str, int]:
        """Each Dropfile process's peak resident memory so far (VmHWM)."""
        peaks = {}
        for process in self.processes:
            if process.dropfile and process.popen.poll() is None:
                peaks[process.name] = vm_hwm_bytes(process.popen.pid)
        return peaks

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each process and its descendants (a
        PostgreSQL server's backends count as PostgreSQL's; they are separate sessions)."""
        tick = os.sysconf("SC_CLK_TCK")
        ours = {p.popen.pid: p.name for p in self.processes}
        parent, spent = {}, {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After the command: state, ppid, ..., utime (index 11), stime (index 12).
            parent[int(entry.name)] = int(fields[1])
            spent[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
        used = dict.fromkeys(ours.values(), 0.0)
        for pid, seconds in spent.items():
            ancestor, hops = pid, 0
            while ancestor not in ours and ancestor > 1 and hops < 50:
                ancestor, hops = parent.get(ancestor, 0), hops + 1
            if ancestor in ours:
                used[ours[ancestor]] += seconds
        return used

    # -- stop ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stops the Dropfile processes, then the engines; removes the data folder."""
        first = [p for p in self.processes if p.dropfile or p.name.startswith("floor")]
        for batch in (first, [p for p in self.processes if p not in first]):
            processes.stop_all([p.child for p in batch], timeout=20)
        self.processes.clear()
        for admin_url, name in self._created_databases:
            if os.environ.get("BENCH_PG_URL") == admin_url:
                _drop_database(admin_url, name)
        if self._state is not None:
            shutil.rmtree(self._state, ignore_errors=True)
            self._state = None


def _drop_database(admin_url: str, name: str) -> None:
    try:
        conn = psycopg2.connect(admin_url, connect_timeout=5)
    except psycopg2.OperationalError:
        return
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    finally:
        conn.close()


class ForeignLoad:
    """How much of the machine's CPU went to processes that are not the bench's (other
    people's tests, say) since the last reading: figures measured while that is high are
    disturbed. The bench's own CPU is its stack's, its own and its finished children's
    (transfers, load generators)."""

    def __init__(self, stack: BenchStack) -> None:
        self._stack = stack
        self._last = self._reading()

    @staticmethod
    def _busy_and_total() -> tuple[float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        tick = os.sysconf("SC_CLK_TCK")
        return (sum(fields) - idle) / tick, sum(fields) / tick

    def _reading(self) -> tuple[float, float, float]:
        import resource

        busy, total = self._busy_and_total()
        own = sum(self._stack.cpu_seconds().values())
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            own += usage.ru_utime + usage.ru_stime
        return busy, total, own

    def percent_since_last(self) -> float:
        """Foreign CPU as a percentage of all the machine's CPU time since the last call."""
        busy, total, own = self._reading()
        last_busy, last_total, last_own = self._last
        self._last = (busy, total, own)
        foreign = (busy - last_busy) - (own - last_own)
        return round(max(0.0, 100 * foreign / max(total - last_total, 1e-9)), 1)


def vm_hwm_bytes(pid: int) -> int:
    """Peak resident set size of a process (Linux /proc), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise StackError(f"no VmHWM for process {pid}")


def describe(endpoints: Endpoints) -> str:
    return json.dumps({k: v for k, v in endpoints.__dict__.items() if "secret" not in k})


def host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 80
