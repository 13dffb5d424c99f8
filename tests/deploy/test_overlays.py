"""What distinguishes the overlays: kind runs everything in the cluster with throwaway
credentials and publishes the gateway on localhost; aws keeps no secret, no AWS key and no
database in the cluster, and gives AWS access through IAM roles for service accounts."""
from __future__ import annotations

import re

import yaml

from .conftest import DEPLOY, ROOT, image_repository_name, is_dropfile_image

AWS_KEY_NAMES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
IN_CLUSTER_STORES = ("postgres", "redis", "valkey", "moto", "minio")


def all_env(manifests):
    for workload in manifests.workloads():
        for container in workload.all_containers():
            yield workload, container, manifests.env_values(container)


def test_no_secret_material_is_committed():
    pem = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
    for path in list(DEPLOY.rglob("*")) + [ROOT / "Dockerfile", ROOT / ".dockerignore"]:
        if path.is_file():
            text = path.read_text()
            assert not pem.search(text), f"{path} holds a private key"
            for doc in yaml.safe_load_all(text) if path.suffix in (".yaml", ".yml") else []:
                if isinstance(doc, dict):
                    assert doc.get("kind") != "Secret", f"{path}: Secrets are never committed"


# --- kind -------------------------------------------------------------------------------

def test_kind_secrets_are_marked_dev_only(rendered):
    for secret in rendered["kind"].of_kind("Secret"):
        for key in secret.get("data") or {}:
            value = rendered["kind"].secret_value(secret["metadata"]["name"], key)
            assert "dev-only" in value, f"{secret['metadata']['name']}.{key} is not marked"


def test_kind_runs_its_stores_in_the_cluster(rendered):
    kind = rendered["kind"]
    for name in ("postgres", "redis", "moto"):
        assert kind.get("Deployment", name) and kind.get("Service", name), name
    setup = kind.workload("Job", "setup").containers[0]
    assert setup["command"] == ["python", "-m", "services.setup"]
    assert is_dropfile_image(setup["image"])


def test_kind_publishes_the_gateway_and_moto_on_localhost(rendered):
    cluster = yaml.safe_load((DEPLOY / "kind" / "cluster.yaml").read_text())
    mappings = {m["containerPort"]: m for node in cluster["nodes"]
                for m in node.get("extraPortMappings", [])}
    for service_name, host_port in (("gateway", 8080), ("moto", 5000)):
        service = rendered["kind"].get("Service", service_name)
        assert service["spec"].get("type") == "NodePort", service_name
        node_port = service["spec"]["ports"][0]["nodePort"]
        assert node_port in mappings, f"{service_name}: node port {node_port} is not mapped"
        assert mappings[node_port]["hostPort"] == host_port
        assert mappings[node_port]["listenAddress"] == "127.0.0.1"


def test_kind_image_is_the_locally_built_one(rendered):
    script = (ROOT / "scripts" / "kind-up.sh").read_text()
    images = {c["image"] for w in rendered["kind"].workloads() for c in w.all_containers()
              if is_dropfile_image(c["image"])}
    assert images == {"dropfile:dev"}
    assert "IMAGE=dropfile:dev" in script
    assert "deploy/kind/cluster.yaml" in script and "deploy/overlays/kind" in script


# --- aws --------------------------------------------------------------------------------

def test_aws_holds_no_secret_values(rendered):
    for secret in rendered["aws"].of_kind("Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]


def test_aws_uses_no_static_keys_and_no_local_endpoints(rendered):
    aws = rendered["aws"]
    for workload, container, env in all_env(aws):
        assert not AWS_KEY_NAMES & set(env), f"{workload.name}: static AWS keys"
        assert not any(name.startswith("AWS_ENDPOINT_URL") for name in env), workload.name
    for config_map in aws.of_kind("ConfigMap"):
        assert not AWS_KEY_NAMES & set(config_map.get("data") or {})


def test_aws_has_no_in_cluster_databases(rendered):
    aws = rendered["aws"]
    for workload in aws.workloads():
        for container in workload.all_containers():
            name = image_repository_name(container["image"])
            assert not any(store in name for store in IN_CLUSTER_STORES), workload.name
    assert not aws.of_kind("PersistentVolumeClaim")
    for name in ("postgres", "redis", "moto"):
        assert aws.get("Service", name) is None


def test_aws_grants_storage_access_through_iam_roles(rendered):
    aws = rendered["aws"]
    for name in ("upload", "events"):
        account = aws.get("ServiceAccount", name)
        role = account["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "")
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role), name
    for name in ("auth", "gateway", "migrate"):
        annotations = aws.get("ServiceAccount", name)["metadata"].get("annotations", {})
        assert "eks.amazonaws.com/role-arn" not in annotations, f"{name} needs no AWS role"
