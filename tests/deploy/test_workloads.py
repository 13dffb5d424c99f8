"""Invariants of every rendered workload: hardened containers with resources, probes that
match the ports, Services that reach a named port, and the objects each service needs
(ServiceAccount, PodDisruptionBudget, HorizontalPodAutoscaler, migration ordering)."""

from __future__ import annotations

import pytest

from .conftest import is_dropfile_image, labels_match, python_module

SERVICES = {"auth": "grpc", "upload": "grpc", "events": "grpc", "gateway": "http"}
AUTOSCALED = {"gateway", "upload"}


def effective(container: dict, pod_spec: dict, key: str):
    """A container securityContext field, falling back to the pod's."""
    own = container.get("securityContext", {})
    return own[key] if key in own else pod_spec.get("securityContext", {}).get(key)


def test_every_overlay_renders_the_services(manifests):
    for name in SERVICES:
        assert manifests.get("Deployment", name), f"{manifests.overlay}: no Deployment {name}"
        assert manifests.get("Service", name), f"{manifests.overlay}: no Service {name}"


def test_grpc_services_are_headless_so_clients_balance_over_every_pod(manifests):
    """A virtual IP would pin each client's one HTTP/2 connection, so every call, to one
    pod whatever the autoscaler adds; headless, the name resolves to each ready pod and
    clients spread calls with round_robin (services/common/clients.py)."""
    for name, port in SERVICES.items():
        service = manifests.get("Service", name)
        headless = service["spec"].get("clusterIP") == "None"
        assert headless == (port == "grpc"), f"{manifests.overlay}: Service {name}"


def test_every_container_is_hardened(manifests):
    for workload in manifests.workloads():
        spec = workload.spec
        assert spec.get("automountServiceAccountToken") is False, workload
        for container in workload.all_containers():
            where = f"{manifests.overlay} {workload.kind}/{workload.name} {container['name']}"
            assert effective(container, spec, "runAsNonRoot") is True, where
            assert (effective(container, spec, "runAsUser") or 0) > 0, where
            security = container.get("securityContext", {})
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("privileged", False) is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where
            seccomp = effective(container, spec, "seccompProfile") or {}
            assert seccomp.get("type") == "RuntimeDefault", where


def test_dropfile_containers_have_a_writable_tmp(manifests):
    # The root filesystem is read-only; Python and libraries still want a /tmp.
    for workload in manifests.workloads():
        empty_dirs = {v["name"] for v in workload.spec.get("volumes", []) if "emptyDir" in v}
        for container in workload.all_containers():
            if is_dropfile_image(container["image"]):
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert mounts.get("/tmp") in empty_dirs, f"{workload.name}/{container['name']}"


def test_every_container_has_requests_and_limits(manifests):
    for workload in manifests.workloads():
        for container in workload.all_containers():
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(bound, {}), (
                        f"{manifests.overlay} {workload.name}/{container['name']}: "
                        f"no {bound}.{resource}"
                    )


def test_every_long_running_container_has_readiness_and_liveness_probes(manifests):
    for workload in manifests.workloads():
        if workload.kind == "Job":
            continue
        for container in workload.containers:
            where = f"{manifests.overlay} {workload.name}/{container['name']}"
            assert "readinessProbe" in container, where
            assert "livenessProbe" in container, where


def test_grpc_services_use_native_grpc_probes_on_their_grpc_port(manifests):
    for workload in manifests.workloads():
        for container in workload.containers:
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            if "grpc" not in ports:
                continue
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe].get("grpc", {}).get("port") == ports["grpc"], (
                    f"{manifests.overlay} {workload.name}: {probe} is not a gRPC health "
                    f"check on port {ports['grpc']}"
                )


def test_grpc_liveness_asks_a_name_that_no_dependency_outage_fails(manifests):
    """Readiness ("") follows PostgreSQL/Redis (services/common/readiness.py); liveness
    must not, or a database outage would get every healthy pod restarted."""
    from services.common.grpc_server import LIVENESS_SERVICE

    for workload in manifests.workloads():
        for container in workload.containers:
            if "grpc" not in container.get("livenessProbe", {}):
                continue
            where = f"{manifests.overlay} {workload.name}"
            assert container["livenessProbe"]["grpc"].get("service") == LIVENESS_SERVICE, where
            assert container["readinessProbe"]["grpc"].get("service", "") == "", where


def test_gateway_probes_are_its_http_endpoints(manifests):
    container = manifests.workload("Deployment", "gateway").containers[0]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        check = container[probe]["httpGet"]
        assert check["path"] == path
        assert check["port"] in ("http", port)


def test_services_target_a_named_container_port(manifests):
    for service in manifests.of_kind("Service"):
        name = service["metadata"]["name"]
        pods = manifests.pods_selected_by({"matchLabels": service["spec"]["selector"]})
        assert pods, f"{manifests.overlay}: Service {name} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort")
            assert isinstance(target, str), f"Service {name}: targetPort must be a port name"
            for pod in pods:
                assert target in pod.container_ports(), (
                    f"Service {name}: no container port named {target} in {pod.name}"
                )
            if name in SERVICES:
                assert port["name"] == SERVICES[name]


def test_every_deployment_has_its_own_service_account(manifests):
    for workload in manifests.workloads():
        account = workload.spec.get("serviceAccountName")
        assert account and account != "default", workload.name
        assert manifests.get("ServiceAccount", account), f"no ServiceAccount {account}"
        assert manifests.get("ServiceAccount", account).get("automountServiceAccountToken") is False


def test_services_have_disruption_budgets(manifests):
    budgets = manifests.of_kind("PodDisruptionBudget")
    for name in SERVICES:
        pod = manifests.workload("Deployment", name)
        assert any(labels_match(b["spec"]["selector"], pod.labels) for b in budgets), name
    for budget in budgets:
        assert manifests.pods_selected_by(budget["spec"]["selector"]), budget["metadata"]


@pytest.mark.parametrize("name", sorted(AUTOSCALED))
def test_gateway_and_upload_autoscale(manifests, name):
    hpa = manifests.get("HorizontalPodAutoscaler", name)
    assert hpa and hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", name)
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # A replica count in the Deployment would fight the autoscaler on every apply.
    assert "replicas" not in manifests.get("Deployment", name)["spec"]


def test_the_migration_job_runs_alembic_upgrade_head(manifests):
    job = manifests.workload("Job", "migrate")
    container = job.containers[0]
    assert is_dropfile_image(container["image"])
    assert container["command"] == ["python", "-m", "alembic", "upgrade", "head"]
    assert job.spec["restartPolicy"] == "Never"


def test_services_using_the_database_wait_for_the_migration(manifests):
    for workload in manifests.workloads():
        if workload.kind == "Job" or not any(
            is_dropfile_image(c["image"]) for c in workload.containers
        ):
            continue
        if not any("CLOUD_DB_URI" in manifests.env_values(c) for c in workload.containers):
            continue
        waits = [
            c
            for c in workload.init_containers
            if python_module(c) == "alembic"
            and "alembic current" in c["command"][-1]
            and "(head)" in c["command"][-1]
        ]
        assert waits, f"{workload.name} reads CLOUD_DB_URI but does not wait for the schema"


def test_dropfile_workloads_run_the_one_image(manifests):
    images = {
        c["image"]
        for w in manifests.workloads()
        for c in w.all_containers()
        if is_dropfile_image(c["image"])
    }
    assert len(images) == 1, images


def test_other_images_are_pinned_to_a_version(manifests):
    for workload in manifests.workloads():
        for container in workload.all_containers():
            image = container["image"]
            if is_dropfile_image(image):
                continue
            tag = image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest" and any(ch.isdigit() for ch in tag), image
            assert tag.count(".") >= 1, f"{image}: pin a full version, not a major tag"


def test_namespaced_objects_live_in_the_dropfile_namespace(manifests):
    for doc in manifests.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "dropfile", doc["metadata"]["name"]
    namespace = manifests.get("Namespace", "dropfile")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
