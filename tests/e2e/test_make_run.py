"""`make run` from a clean clone, with nothing configured: the stack comes up on embedded
engines (PostgreSQL, Valkey, SeaweedFS), a file goes up with the CLI, is confirmed by the
reconciler and comes back byte-identical; a service and an engine killed with SIGKILL come
back by themselves; Ctrl-C stops everything; after a restart the file is still there.

The clone sits in a private folder (mode 0700, as under /root) and, as root, the embedded
PostgreSQL still runs (as `nobody`, from /var/lib/dropfile). Node.js is hidden from PATH, so
the web app is built with Node.js from PyPI, as on a machine with nothing but Python."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tools.engines import (
    MAX_PORT_OFFSET,
    POSTGRES_PORT,
    S3_PORT,
    SEAWEED_PORTS,
    VALKEY_PORT,
    root_postgres_home,
)
from tools.processes import ChildProcess, ProcessError, free_port, http_ok, port_free, wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Variables that would point `make run` at configured backends instead of embedded ones.
CONFIGURED = (
    "CLOUD_DB_URI",
    "CLOUD_RD_URI",
    "SQS_QUEUE_URL",
    "S3_BUCKET",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "DROPFILE_ENV",
)


class Stack:
    """One `make run`, its output collected as it comes."""

    def __init__(self, clone: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = ChildProcess(
            "make run", ["make", "run"], cwd=clone, env=env, on_line=self.lines.append
        ).start()

    @property
    def running(self) -> bool:
        return self.process.running

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        def printed() -> re.Match | None:
            return next(filter(None, (re.search(pattern, line) for line in list(self.lines))), None)

        try:
            self.process.wait_ready(printed, timeout=timeout, interval=0.2)
        except ProcessError:
            pass  # it may have printed the line just before it exited
        found = printed()
        if not found:
            pytest.fail(
                f"`make run` never printed {pattern!r}; its output ends with:\n"
                + "\n".join(self.lines[-40:])
            )
        return found

    def interrupt(self, timeout: float = 90) -> int:
        """Ctrl-C: SIGINT to the foreground process group, as a terminal sends it."""
        if not self.process.running:
            return self.process.wait()
        self.process.signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail("`make run` did not stop within 90 s of Ctrl-C")


def free_engine_port_offset() -> int:
    """An offset that moves every embedded engine's port onto a free one, so this test never
    meets a `make run` on the default ports."""
    ports = [POSTGRES_PORT, VALKEY_PORT, S3_PORT, *SEAWEED_PORTS.values()]
    ports += [port + 10000 for port in (S3_PORT, *SEAWEED_PORTS.values())]
    for offset in range(101, MAX_PORT_OFFSET, 97):
        if all(port_free(port + offset) for port in ports):
            return offset
    pytest.fail("no free range of ports for the embedded engines")


def path_without(tmp: Path, hidden: set[str]) -> str:
    """A PATH with every command of this one but the hidden ones."""
    folder = tmp / "bin"
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = Path(directory) / name
            if name in hidden or (folder / name).exists() or not os.access(target, os.X_OK):
                continue
            (folder / name).symlink_to(target)
    return str(folder)


def pid_of(clone: Path, needle: str) -> int:
    matches = [int(line.split(":")[0]) for line in processes_under(clone) if needle in line]
    assert len(matches) >= 1, f"no process {needle!r} of {clone}"
    return min(matches)  # the parent: it started first


def processes_under(clone: Path) -> list[str]:
    """Processes of the clone's stack: started from it, or (as root) from the folder under
    /var/lib/dropfile where its PostgreSQL runs."""
    return running_from(clone) + running_from(root_postgres_home(clone / ".dropfile"))


def running_from(folder: Path) -> list[str]:
    """Command lines of running processes that started from the folder."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (OSError, ValueError):
            continue
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            found.append(f"{pid}: {cmdline.strip()}")
    return found


@pytest.fixture(scope="module")
def clone():
    # A private folder (mkdtemp makes it 0700): other users, `nobody` included, cannot
    # enter it, as under /root.
    base = Path(tempfile.mkdtemp(prefix="dropfile-make-run-", dir="/tmp"))
    assert base.stat().st_mode & 0o777 == 0o700
    target = base / "dropfile"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    yield target
    leftovers = processes_under(target)
    for line in leftovers:
        os.kill(int(line.split(":")[0]), signal.SIGKILL)
    shutil.rmtree(root_postgres_home(target / ".dropfile"), ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)


# Its first start alone may take 15 minutes (a clean clone's virtualenv, Node.js from PyPI
# and the web app's build), beyond the suite's 300 s: the test's own waits say what was late.
@pytest.mark.timeout(1800)
def test_make_run_from_a_clean_clone_on_embedded_engines(clone, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURED}
    ports = {
        name: free_port()
        for name in ("DROPFILE_HTTP_PORT", "AUTH_GRPC_PORT", "UPLOAD_GRPC_PORT", "EVENTS_GRPC_PORT")
    }
    env.update({name: str(port) for name, port in ports.items()})
    env["DROPFILE_CONFIG_DIR"] = str(tmp_path / "cli-config")
    env["DROPFILE_ENGINE_PORT_OFFSET"] = str(free_engine_port_offset())
    env["PATH"] = path_without(tmp_path, {"node", "npm", "npx", "corepack"})
    url = f"http://127.0.0.1:{ports['DROPFILE_HTTP_PORT']}"
    dropfile = clone / ".venv" / "bin" / "dropfile"

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(dropfile), "--server", url, *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"dropfile {' '.join(args)}: {result.stderr}"
        return result

    original = tmp_path / "holiday video.bin"
    original.write_bytes(os.urandom(12 * 1024 * 1024 + 12345))

    first = Stack(clone, env)
    try:
        first.wait_for(r"Dropfile is running at http://127\.0\.0\.1:\d+", timeout=900)
        for engine in ("postgres", "valkey", "s3"):
            assert any(f"{engine} (embedded) is ready" in line for line in first.lines)
        # Built with Node.js from PyPI (node was hidden), and served at /.
        assert (clone / ".venv" / "bin" / "node").exists()
        index = httpx.get(f"{url}/", timeout=10)
        assert index.status_code == 200
        assert index.text == (clone / "web" / "dist" / "index.html").read_text()
        if os.geteuid() == 0:
            data = clone / ".dropfile" / "postgres"
            assert data.is_symlink() and (data / "PG_VERSION").exists()
        twice = subprocess.run(
            ["make", "run"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert twice.returncode != 0
        assert "already running" in twice.stderr
        cli(
            "signup",
            "--email",
            "newcomer@example.com",
            "--name",
            "New Comer",
            "--password-stdin",
            stdin="a good long password\n",
        )
        cli("upload", str(original), "--no-progress")  # waits until storage confirms
        listed = json.loads(cli("ls", "--json").stdout)
        [entry] = [f for f in listed if f["fileName"] == original.name]
        assert entry["status"] == "UPLOADED"
        copy = tmp_path / "copy.bin"
        cli("get", entry["fileId"], str(copy), "--no-progress")
        assert copy.read_bytes() == original.read_bytes()

        # A crash of a service and of an engine: both come back by themselves, and the
        # stack serves again.
        os.kill(pid_of(clone, "-m services.upload.server"), signal.SIGKILL)
        os.kill(pid_of(clone, "pginstall/bin/postgres -D"), signal.SIGKILL)
        first.wait_for(r"upload was killed by SIGKILL after [\d.]+ s; restarting it in", 30)
        first.wait_for(r"postgres was killed by SIGKILL after [\d.]+ s; restarting it in", 30)
        first.wait_for(r"upload restarted \(pid \d+\)", 60)
        first.wait_for(r"postgres restarted \(pid \d+\)", 120)
        wait_until(
            lambda: http_ok(f"{url}/readyz", timeout=5),
            timeout=120,
            interval=0.5,
            what="the stack to be ready again",
        )
        small = tmp_path / "after the crash.txt"
        small.write_bytes(os.urandom(70_000))
        cli("upload", str(small), "--no-progress")
        listed = json.loads(cli("ls", "--json").stdout)
        assert {f["fileName"]: f["status"] for f in listed}[small.name] == "UPLOADED"
        assert first.running, "make run stopped after a crash"
    finally:
        code = first.interrupt()
    assert first.process.returncode is not None
    assert processes_under(clone) == [], "processes left behind after Ctrl-C"
    assert code in (0, 2, 130, -2), f"make run ended with {code}"

    second = Stack(clone, env)
    try:
        second.wait_for(r"Dropfile is running at", timeout=300)
        listed = json.loads(cli("ls", "--json").stdout)
        [entry] = [f for f in listed if f["fileName"] == original.name]
        assert entry["status"] == "UPLOADED"
        again = tmp_path / "again.bin"
        cli("get", entry["fileId"], str(again), "--no-progress")
        assert again.read_bytes() == original.read_bytes()
    finally:
        second.interrupt()
    assert processes_under(clone) == []


def test_ports_in_use_are_named():
    from tools.engines import valkey
    from tools.run_stack import StartError, check_ports

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartError, match=f"gateway {port}"):
            check_ports({"gateway": port}, [])
        engine = valkey(Path(tempfile.mkdtemp()))
        engine.ports = [port]
        with pytest.raises(StartError, match=f"valkey {port}"):
            check_ports({}, [engine])
