"""What the manifests say about observability and the host's view of storage: every
Dropfile process exposes /metrics on a container port named `metrics` that Prometheus finds
through pod annotations, only the `monitoring` namespace may scrape it, the gateway keeps it
off its public port, and in kind the presigned URLs are signed for SeaweedFS as the host
reaches it."""

from __future__ import annotations

from gateway.metrics import serves_metrics_on_http_port
from gateway.settings import GatewaySettings

from .conftest import DEPLOY, labels_match
from .local_stack import kind_published_ports
from .test_settings import dropfile_containers

LONG_RUNNING = ("auth", "upload", "events", "gateway")


def test_every_process_serves_metrics_on_a_named_port(manifests):
    for name in LONG_RUNNING:
        workload = manifests.workload("Deployment", name)
        (container,) = workload.containers
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = manifests.env_values(container)
        where = f"{manifests.overlay} {name}"
        assert "metrics" in ports, f"{where}: no container port named metrics"
        assert int(env["METRICS_PORT"]) == ports["metrics"], where
        assert env["METRICS_HOST"] == "0.0.0.0", where
        annotations = workload.pod["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", where
        assert annotations.get("prometheus.io/port") == str(ports["metrics"]), where
        assert annotations.get("prometheus.io/path") == "/metrics", where


def test_gateway_metrics_are_not_on_its_public_port(manifests):
    (container,) = manifests.workload("Deployment", "gateway").containers
    env = manifests.env_values(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] != ports["http"]
    # With METRICS_PORT set the gateway never answers /metrics on its HTTP port.
    settings = GatewaySettings(
        _env_file=None,
        dropfile_env=env["DROPFILE_ENV"],
        cors_origins=env["CORS_ORIGINS"],
        metrics_port=int(env["METRICS_PORT"]),
    )
    assert not serves_metrics_on_http_port(settings)
    for service in manifests.of_kind("Service"):
        for port in service["spec"]["ports"]:
            assert port.get("targetPort") != "metrics", (
                f"Service {service['metadata']['name']} exposes metrics"
            )


def test_only_the_monitoring_namespace_scrapes_metrics(manifests):
    policies = manifests.of_kind("NetworkPolicy")
    for name in LONG_RUNNING:
        pod = manifests.workload("Deployment", name)
        admitting = [
            rule
            for policy in policies
            if labels_match(policy["spec"]["podSelector"], pod.labels)
            for rule in policy["spec"].get("ingress", [])
            if any(
                p.get("port") in ("metrics", pod.container_ports()["metrics"])
                for p in rule.get("ports", [])
            )
        ]
        assert admitting, f"{manifests.overlay}: nothing may scrape {name}"
        for rule in admitting:
            peers = rule.get("from", [])
            assert peers and all(
                peer.get("namespaceSelector", {}).get("matchLabels")
                == {"kubernetes.io/metadata.name": "monitoring"}
                for peer in peers
            ), rule


def test_tracing_is_off_in_the_manifests(manifests):
    # Tracing needs a collector the manifests do not run: enabling it is the operator's
    # choice (deploy/README.md), so no pod names an OTLP endpoint.
    for _, container in dropfile_containers(manifests):
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in manifests.env_values(container)


def test_kind_presigns_for_seaweedfs_as_the_host_reaches_it(rendered):
    kind = rendered["kind"]
    (container,) = kind.workload("Deployment", "upload").containers
    public = kind.env_values(container)["S3_PUBLIC_ENDPOINT_URL"]
    storage_node_port = kind.get("Service", "seaweedfs")["spec"]["ports"][0]["nodePort"]
    host_port = next(
        host for host, node in kind_published_ports().items() if node == storage_node_port
    )
    assert public == f"http://localhost:{host_port}"
    readme = (DEPLOY / "README.md").read_text()
    assert "/etc/hosts" not in readme
    assert "/etc/hosts" not in (DEPLOY.parent / "scripts" / "kind-up.sh").read_text()


def test_aws_presigns_for_the_endpoint_it_uses(rendered):
    for _, container in dropfile_containers(rendered["aws"]):
        assert "S3_PUBLIC_ENDPOINT_URL" not in rendered["aws"].env_values(container)
