"""The manifests configure each process only with names its settings class reads, and with
values that class accepts: a typo in a variable name, a key missing from a ConfigMap or an
invalid value fails here instead of in a pod."""

from __future__ import annotations

import pytest

from gateway.settings import GatewaySettings
from migrations.settings import MigrationSettings
from services.auth.settings import AuthSettings
from services.common.settings import GrpcServiceSettings, StorageSettings
from services.events.settings import EventsSettings
from services.setup import SetupSettings
from services.upload.settings import UploadSettings

from .conftest import is_dropfile_image, python_module

SETTINGS_BY_MODULE = {
    "services.auth.server": AuthSettings,
    "services.upload.server": UploadSettings,
    "services.events.server": EventsSettings,
    "gateway": GatewaySettings,
    "alembic": MigrationSettings,
    "services.setup": SetupSettings,
}
# Read by boto3 itself (credentials chain, IRSA), not by our settings: allowed for processes
# that talk to AWS.
BOTO3_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
}
# Secrets an overlay expects to exist without rendering them, and a stand-in for each value
# (the shape the operator's value must have) to check the settings accept it.
EXTERNAL_SECRETS = {
    "kind": {"dropfile-jwt": "created by scripts/kind-up.sh"},
    "aws": {
        name: "created by the operator"
        for name in ("dropfile-db", "dropfile-redis", "dropfile-jwt", "dropfile-service-token")
    },
}
STAND_INS = {
    "CLOUD_DB_URI": "postgresql://dropfile:password@db.example.internal:5432/dropfile",
    "CLOUD_RD_URI": "rediss://:token@cache.example.internal:6379/0",
    "PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----",
    "PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\\n...\\n-----END PUBLIC KEY-----",
    "SERVICE_TOKEN": "x" * 43,
}


def dropfile_containers(manifests):
    for workload in manifests.workloads():
        for container in workload.all_containers():
            if is_dropfile_image(container["image"]):
                yield workload, container


def settings_class(workload, container):
    module = python_module(container)
    assert module in SETTINGS_BY_MODULE, (
        f"{workload.name}/{container['name']} runs {module!r}: add its settings class here"
    )
    return SETTINGS_BY_MODULE[module]


def allowed_names(cls) -> set[str]:
    names = {name.upper() for name in cls.model_fields}
    if issubclass(cls, StorageSettings):
        names |= BOTO3_ENV
    return names


def test_every_dropfile_container_runs_a_known_process(manifests):
    modules = {python_module(c) for _, c in dropfile_containers(manifests)}
    assert {
        "services.auth.server",
        "services.upload.server",
        "services.events.server",
        "gateway",
        "alembic",
    } <= modules
    for workload, container in dropfile_containers(manifests):
        settings_class(workload, container)


def test_env_names_are_settings_of_the_process(manifests):
    for workload, container in dropfile_containers(manifests):
        cls = settings_class(workload, container)
        allowed = allowed_names(cls)
        where = f"{manifests.overlay} {workload.name}/{container['name']} ({cls.__name__})"
        for var in container.get("env", []):
            assert var["name"] == var["name"].upper(), f"{where}: {var['name']}"
            assert var["name"] in allowed, f"{where}: {var['name']} is not a setting"
            ref = var.get("valueFrom", {})
            for kind in ("configMapKeyRef", "secretKeyRef"):
                if kind in ref:
                    # One name for one setting everywhere: the key is the variable's name.
                    assert ref[kind]["key"] == var["name"], f"{where}: {var['name']}"
        for source in container.get("envFrom", []):
            config = source.get("configMapRef") or source.get("secretRef")
            obj = manifests.get(
                "ConfigMap" if "configMapRef" in source else "Secret", config["name"]
            )
            assert obj is not None, f"{where}: envFrom {config['name']} is not rendered"
            for key in obj.get("data") or {}:
                assert key in allowed, f"{where}: {config['name']} key {key} is not a setting"


def test_referenced_keys_exist(manifests):
    external = EXTERNAL_SECRETS[manifests.overlay]
    for workload in manifests.workloads():
        for container in workload.all_containers():
            where = f"{manifests.overlay} {workload.name}/{container['name']}"
            for var in container.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    name, key = ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
                    assert manifests.config_value(name, key) is not None, (
                        f"{where}: ConfigMap {name} has no key {key}"
                    )
                if "secretKeyRef" in ref:
                    name, key = ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
                    assert not ref["secretKeyRef"].get("optional"), where
                    if manifests.get("Secret", name) is None:
                        assert name in external, (
                            f"{where}: Secret {name} is neither rendered "
                            f"nor documented as created outside"
                        )
                    else:
                        assert manifests.secret_value(name, key) is not None, (
                            f"{where}: Secret {name} has no key {key}"
                        )


def test_every_config_key_is_read_by_someone(manifests):
    """A key nobody reads is a typo or a leftover (an overlay's SQS_QUEUE_ULR would be)."""
    used = set()
    for workload in manifests.workloads():
        for container in workload.all_containers():
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    used.add((ref["name"], ref["key"]))
    for config_map in manifests.of_kind("ConfigMap"):
        name = config_map["metadata"]["name"]
        for key in config_map.get("data") or {}:
            assert (name, key) in used, f"{manifests.overlay}: {name}.{key} is read by no pod"


def test_the_settings_accept_the_values(manifests):
    """Each process's settings class validates the environment its pod would get."""
    for workload, container in dropfile_containers(manifests):
        cls = settings_class(workload, container)
        values = manifests.env_values(container)
        fields = {}
        for name, value in values.items():
            if name in BOTO3_ENV:
                continue
            if value is None:
                assert name in STAND_INS, f"{workload.name}: no stand-in value for {name}"
                value = STAND_INS[name]
            fields[name.lower()] = value
        try:
            cls(_env_file=None, **fields)
        except Exception as exc:  # noqa: BLE001 - reported with the pod it concerns
            pytest.fail(
                f"{manifests.overlay} {workload.name}/{container['name']}: "
                f"{cls.__name__} rejects the manifest's values: {exc}"
            )


def test_servers_listen_on_all_interfaces_and_their_declared_ports(manifests):
    for workload, container in dropfile_containers(manifests):
        cls = settings_class(workload, container)
        values = manifests.env_values(container)
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if issubclass(cls, GrpcServiceSettings):
            assert values.get("DROPFILE_BIND_HOST") == "0.0.0.0", workload.name
            port_setting = next(n for n in cls.model_fields if n.endswith("_grpc_port"))
            assert int(values[port_setting.upper()]) == ports["grpc"], workload.name
            if "metrics" in ports:
                assert int(values["METRICS_PORT"]) == ports["metrics"], workload.name
                assert values.get("METRICS_HOST") == "0.0.0.0", workload.name
        if cls is GatewaySettings:
            assert values.get("DROPFILE_HTTP_HOST") == "0.0.0.0"
            assert int(values["DROPFILE_HTTP_PORT"]) == ports["http"]


def test_service_addresses_point_at_the_services(manifests):
    services = {s["metadata"]["name"]: s for s in manifests.of_kind("Service")}
    for workload, container in dropfile_containers(manifests):
        for name, value in manifests.env_values(container).items():
            if not name.endswith("_SERVICE_ADDR"):
                continue
            host, _, port = value.rpartition(":")
            expected = name.removesuffix("_SERVICE_ADDR").lower()
            assert host == expected and expected in services, f"{workload.name}: {name}"
            assert int(port) in {p["port"] for p in services[expected]["spec"]["ports"]}


def test_production_settings_everywhere(manifests):
    # Development mode generates keys on the (read-only) disk and relaxes cookies.
    for workload, container in dropfile_containers(manifests):
        assert manifests.env_values(container).get("DROPFILE_ENV") == "production", workload.name
