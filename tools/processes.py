"""Free ports, readiness waits and child processes: the one helper that `make run`
(tools/run_stack.py, tools/engines.py), the bench (bench/stack.py) and the tests share.

Standard library only, so importing it pulls in no server dependency (a gRPC health check
imports grpcio when it is asked for). Everything binds and dials 127.0.0.1 unless told.

Ports
    free_port()                  a port nothing listens on, never handed out twice here
    free_port(twin_offset=10000) one whose port + offset is free too (SeaweedFS's gRPC twins)
    port_free(port)              whether a server could bind `port` now

Readiness checks (each answers at once, True or False)
    tcp_open(port), http_status(url), http_ok(url) (200), http_answers(url) (below 500),
    grpc_serving(address, service="") (gRPC health says SERVING)

Waiting
    wait_until(check, timeout=, what=, alive=) -> check's first truthy value; NotReady
    when time runs out, ProcessExited as soon as `alive()` turns False.

Child processes
    ChildProcess(name, argv, env=, cwd=, log=Path | on_line=callable, user=, stop_signal=)
    .start(), .wait_ready(check, timeout=), .stop(timeout=), .kill(), .signal(sig),
    .running, .returncode, .log_text(), .log_tail(); stop_all(children) stops a batch.
    Each child leads a session (and process group) of its own, so stopping it stops what
    it started too."""

from __future__ import annotations

import http.client
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

LOCALHOST = "127.0.0.1"
_T = TypeVar("_T")


class ProcessError(RuntimeError):
    """What this module raises."""


class NotReady(ProcessError):
    """A wait ran out of time."""


class ProcessExited(ProcessError):
    """A child process exited while something waited for it."""


# --- ports ------------------------------------------------------------------------------------

# Ports are only claimed when the processes that were given them start: never hand one out
# twice in this process, or two servers started side by side could be given the same one.
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()
# With a twin, ports are drawn from here: below Linux's ephemeral range (32768-60999) with
# the twin's offset of 10000, where outgoing connections rarely hold one.
_TWIN_RANGE = (20000, 40000)


def port_free(port: int, host: str = LOCALHOST) -> bool:
    """Whether a server (which sets SO_REUSEADDR, as all of ours do) could bind `port`."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(
    *, host: str = LOCALHOST, twin_offset: int | None = None, avoid: Collection[int] = ()
) -> int:
    """A port nothing is bound to on `host`, chosen by the kernel and never returned twice
    by this process; none in `avoid`. With `twin_offset`, one whose port + offset is free
    (and never handed out) too."""
    for _ in range(500):
        if twin_offset is None:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port: int = probe.getsockname()[1]
            claim = {port}
        else:
            low, high = _TWIN_RANGE
            port = low + secrets.randbelow(high - low)
            claim = {port, port + twin_offset}
            if port + twin_offset > 65535 or not all(port_free(p, host) for p in claim):
                continue
        if claim & set(avoid):
            continue
        with _handed_out_lock:
            if claim & _handed_out:
                continue
            _handed_out.update(claim)
        return port
    raise ProcessError("no free port found")


# --- readiness checks -------------------------------------------------------------------------

# Never through a proxy named in the environment: these addresses are local.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def tcp_open(port: int, host: str = LOCALHOST, *, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as probe:
        probe.settimeout(timeout)
        return probe.connect_ex((host, port)) == 0


def http_status(url: str, *, timeout: float = 2.0) -> int | None:
    """The status of a GET of `url` (redirects followed), or None when nothing answers."""
    try:
        with _opener.open(url, timeout=timeout) as reply:
            status: int = reply.status
            return status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code
    except (OSError, http.client.HTTPException):
        return None


def http_ok(url: str, *, timeout: float = 2.0) -> bool:
    """Whether a GET of `url` answers 200."""
    return http_status(url, timeout=timeout) == 200


def http_answers(url: str, *, timeout: float = 2.0) -> bool:
    """Whether `url` answers at all, short of a server error (a 403 to an unsigned S3
    request means the S3 API is up)."""
    status = http_status(url, timeout=timeout)
    return status is not None and status < 500


def grpc_serving(address: str, service: str = "", *, timeout: float = 2.0) -> bool:
    """Whether gRPC health at `address` (host:port) says `service` is SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        # Typed loosely: the stubs' HealthStub is generic over sync and asyncio channels.
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


# --- waiting ----------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], _T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    alive: Callable[[], bool] | None = None,
) -> _T:
    """Calls `check` until it returns something truthy, and returns that. Raises NotReady
    after `timeout` seconds, and ProcessExited as soon as `alive()` is False. What `check`
    raises goes through."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            raise ProcessExited(f"exited while waiting for {what}")
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise NotReady(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# --- child processes --------------------------------------------------------------------------


class ChildProcess:
    """A command run as a child process in a session of its own, its output (stdout and
    stderr together) appended to `log`, or handed line by line to `on_line` (or, with
    neither, the parent's). It can be started again once it has exited, with the same
    command, environment and log."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        if log is not None and on_line is not None:
            raise ValueError("a child's output goes to a log or to on_line, not both")
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log = log
        self.on_line = on_line
        self.user = user
        self.stop_signal = stop_signal
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    # -- state -------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: the signal that ended it), None while it runs."""
        return None if self.popen is None else self.popen.poll()

    @property
    def _popen(self) -> subprocess.Popen[bytes]:
        if self.popen is None:
            raise ProcessError(f"{self.name} was never started")
        return self.popen

    # -- start -------------------------------------------------------------------------------

    def start(self) -> ChildProcess:
        if self.running:
            raise ProcessError(f"{self.name} is already running")
        if self.log is not None:
            with open(self.log, "ab") as out:
                if self.user:
                    os.chown(self.log, pwd.getpwnam(self.user).pw_uid, -1)
                self.popen = self._spawn(out)
        elif self.on_line is not None:
            self.popen = self._spawn(subprocess.PIPE)
            threading.Thread(
                target=self._relay,
                args=(self.popen, self.on_line),
                name=f"{self.name}-output",
                daemon=True,
            ).start()
        else:
            self.popen = self._spawn(None)
        self.started_at = time.monotonic()
        return self

    def _spawn(self, out: IO[bytes] | int | None) -> subprocess.Popen[bytes]:
        uid = gid = None
        if self.user:
            entry = pwd.getpwnam(self.user)
            uid, gid = entry.pw_uid, entry.pw_gid
        return subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=uid,
            group=gid,
        )

    @staticmethod
    def _relay(popen: subprocess.Popen[bytes], on_line: Callable[[str], None]) -> None:
        assert popen.stdout is not None
        for raw in iter(popen.stdout.readline, b""):
            on_line(raw.decode(errors="replace").rstrip("\r\n"))
        popen.stdout.close()

    def wait_ready(
        self,
        check: Callable[[], object],
        *,
        timeout: float,
        what: str | None = None,
        interval: float = 0.1,
    ) -> None:
        """Waits until `check()` is truthy. ProcessExited (with the end of the log) if the
        child exits first, NotReady if time runs out."""
        what = what or f"{self.name} to be ready"
        try:
            wait_until(
                check, timeout=timeout, what=what, interval=interval, alive=lambda: self.running
            )
        except ProcessExited:
            raise ProcessExited(
                f"{self.name} exited with {self.returncode} while waiting for {what}"
                f"{self._tail_note()}"
            ) from None
        except NotReady as exc:
            raise NotReady(f"{exc}{self._tail_note()}") from None

    # -- stop --------------------------------------------------------------------------------

    def signal(self, sig: int, *, group: bool = True) -> None:
        """Sends `sig` to the child's process group (everything it started), or with
        group=False to the child alone. A child that is gone already is no error."""
        if self.popen is None:
            return
        try:
            if group:
                os.killpg(self.popen.pid, sig)
            elif self.popen.poll() is None:
                self.popen.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; subprocess.TimeoutExpired if it runs on past `timeout`."""
        return self._popen.wait(timeout)

    def stop(
        self, *, timeout: float = 20.0, sig: int | None = None, group: bool = True
    ) -> int | None:
        """Sends `sig` (the stop signal by default), waits up to `timeout` seconds, then
        kills the whole group. Returns the exit status (None if never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.signal(self.stop_signal if sig is None else sig, group=group)
        return self._reap(timeout)

    def kill(self) -> int | None:
        """SIGKILL to the whole group, and the exit status."""
        return self.stop(sig=signal.SIGKILL)

    def _reap(self, timeout: float) -> int:
        popen = self._popen
        try:
            return popen.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return popen.wait()

    # -- output ------------------------------------------------------------------------------

    def log_text(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _tail_note(self) -> str:
        tail = self.log_tail()
        return f"; the end of {self.log}:\n{tail}" if tail else ""


def stop_all(
    children: Iterable[ChildProcess],
    *,
    timeout: float = 20.0,
    on_kill: Callable[[ChildProcess], None] | None = None,
) -> None:
    """Signals every running child at once (each its own stop signal, to its group), then
    waits for all of them within one `timeout`, killing the ones still running then
    (`on_kill` is told of each first)."""
    batch = [child for child in children if child.popen is not None]
    for child in batch:
        if child.running:
            child.signal(child.stop_signal)
    deadline = time.monotonic() + timeout
    for child in batch:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if on_kill is not None:
                on_kill(child)
            child.kill()


def run_json_module(module: str, payload: object, *, cwd: Path, timeout: float) -> Any:
    """Runs `python -m module` in a process of its own with `payload` as JSON on its stdin;
    returns its stdout parsed as JSON. RuntimeError (with the end of its stderr) when it
    fails: the bench's clients and load generators run this way, never sharing a GIL."""
    result = subprocess.run(
        [sys.executable, "-m", module],
        cwd=cwd,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)
