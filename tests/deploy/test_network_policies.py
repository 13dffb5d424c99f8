"""NetworkPolicies: ingress is denied by default; every connection a pod's configuration
makes (service addresses, database and cache URLs, storage endpoints) is allowed, and
every pod-to-pod allowance is one that some configuration uses."""

from __future__ import annotations

from urllib.parse import urlsplit

from .conftest import labels_match


def policies(manifests):
    return manifests.of_kind("NetworkPolicy")


DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "redis": 6379, "rediss": 6379}


def destinations(value: str | None) -> list[tuple[str, int]]:
    """(host, port) of each `host:port` or URL in a (possibly comma-separated) value."""
    found = []
    for item in (value or "").split(","):
        item = item.strip()
        if "://" in item:
            parts = urlsplit(item)
            try:
                port = parts.port or DEFAULT_PORTS.get(parts.scheme)
            except ValueError:
                continue
            if parts.hostname and port:
                found.append((parts.hostname, port))
        else:
            host, _, port = item.rpartition(":")
            if host and port.isdigit():
                found.append((host, int(port)))
    return found


def connections(manifests):
    """(source workload, target Service, Service port) for every in-cluster address found
    in a container's environment."""
    services = {s["metadata"]["name"]: s for s in manifests.of_kind("Service")}
    found = []
    for workload in manifests.workloads():
        for container in workload.all_containers():
            for value in manifests.env_values(container).values():
                for target in destinations(value):
                    if target[0].split(".")[0] not in services:
                        continue
                    service = services[target[0].split(".")[0]]
                    port = next(
                        (p for p in service["spec"]["ports"] if p["port"] == target[1]), None
                    )
                    assert port, f"{workload.name}: {value} names no port of its Service"
                    found.append((workload, service, port))
    return found


def rule_allows(rule: dict, source_labels: dict, port_names: set, port_numbers: set) -> bool:
    peers = rule.get("from")
    if peers:  # absent or empty `from` admits every source
        if not any(
            "podSelector" in peer
            and "namespaceSelector" not in peer
            and labels_match(peer["podSelector"], source_labels)
            for peer in peers
        ):
            return False
    ports = rule.get("ports")
    return not ports or any(p.get("port") in port_names | port_numbers for p in ports)


def allowed(manifests, source, target_pod, port_name: str) -> bool:
    number = target_pod.container_ports()[port_name]
    return any(
        rule_allows(rule, source.labels, {port_name}, {number})
        for policy in policies(manifests)
        if labels_match(policy["spec"]["podSelector"], target_pod.labels)
        for rule in policy["spec"].get("ingress", [])
    )


def test_ingress_is_denied_by_default(manifests):
    deny = [
        p
        for p in policies(manifests)
        if p["spec"]["podSelector"] == {}
        and p["spec"].get("policyTypes") == ["Ingress"]
        and not p["spec"].get("ingress")
    ]
    assert deny, f"{manifests.overlay}: no default-deny ingress policy"


def test_every_policy_selects_pods_and_names_their_ports(manifests):
    for policy in policies(manifests):
        name = policy["metadata"]["name"]
        targets = manifests.pods_selected_by(policy["spec"]["podSelector"])
        assert targets, f"{manifests.overlay}: NetworkPolicy {name} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert manifests.pods_selected_by(peer["podSelector"]), (
                        f"NetworkPolicy {name} admits pods that do not exist: {peer}"
                    )
            for port in rule.get("ports", []):
                for target in targets:
                    names = target.container_ports()
                    assert port["port"] in names or port["port"] in names.values(), (
                        f"NetworkPolicy {name}: {target.name} has no port {port['port']}"
                    )


def test_gateway_is_reachable_from_anywhere_on_http(manifests):
    gateway = manifests.workload("Deployment", "gateway")
    stranger = {"app.kubernetes.io/name": "somebody-else"}
    assert any(
        rule_allows(rule, stranger, {"http"}, {gateway.container_ports()["http"]})
        and not rule.get("from")
        for policy in policies(manifests)
        if labels_match(policy["spec"]["podSelector"], gateway.labels)
        for rule in policy["spec"].get("ingress", [])
    )


def test_grpc_services_are_closed_to_strangers(manifests):
    stranger = type("Stranger", (), {"labels": {"app.kubernetes.io/name": "somebody-else"}})
    for name in ("auth", "upload", "events"):
        pod = manifests.workload("Deployment", name)
        assert not allowed(manifests, stranger, pod, "grpc"), name


def test_every_configured_connection_is_allowed(manifests):
    found = connections(manifests)
    assert found
    for source, service, port in found:
        for target in manifests.pods_selected_by({"matchLabels": service["spec"]["selector"]}):
            assert allowed(manifests, source, target, port["targetPort"]), (
                f"{manifests.overlay}: {source.name} is configured to reach "
                f"{service['metadata']['name']}:{port['port']} but no policy allows it"
            )


def test_pod_to_pod_allowances_are_all_used(manifests):
    """Least privilege: a pod admitted by name (PostgreSQL and Redis only from the services
    that use them, each gRPC service only from its callers) really connects there."""
    used = {
        (source.name, service["metadata"]["name"]) for source, service, _ in connections(manifests)
    }
    services = manifests.of_kind("Service")
    for policy in policies(manifests):
        for target in manifests.pods_selected_by(policy["spec"]["podSelector"]):
            target_services = {
                s["metadata"]["name"]
                for s in services
                if labels_match({"matchLabels": s["spec"]["selector"]}, target.labels)
            }
            for rule in policy["spec"].get("ingress", []):
                for peer in rule.get("from", []):
                    if "podSelector" not in peer or "namespaceSelector" in peer:
                        continue
                    for source in manifests.pods_selected_by(peer["podSelector"]):
                        assert any((source.name, s) in used for s in target_services), (
                            f"{manifests.overlay}: {policy['metadata']['name']} admits "
                            f"{source.name}, which never connects to {target.name}"
                        )


def test_in_cluster_stores_are_closed_to_strangers(manifests):
    stranger = type("Stranger", (), {"labels": {"app.kubernetes.io/name": "somebody-else"}})
    for name, port in (("postgres", "postgres"), ("redis", "redis")):
        if manifests.get("Deployment", name):
            assert not allowed(manifests, stranger, manifests.workload("Deployment", name), port), (
                name
            )
