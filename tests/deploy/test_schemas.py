"""Every rendered object validates strictly (unknown fields are errors) against the
Kubernetes OpenAPI schemas kubernetes-validate bundles, for the oldest and newest versions
the manifests target. An object no schema covers fails too (the command line only warns)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

try:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError
except ImportError:  # reported by the test, with what to do
    kubernetes_validate = None

# Native gRPC probes need 1.24+; 1.30 is the oldest version the manifests are checked for.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(manifests, version):
    if kubernetes_validate is None:
        pytest.fail(
            "kubernetes-validate is not installed in this virtualenv: run `make "
            "deploy-check` or `pip install -r deploy/requirements-dev.txt`",
            pytrace=False,
        )
    failures = []
    for doc in manifests.docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except ValidationError as exc:
            failures.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except SchemaNotFoundError as exc:
            failures.append(f"{where}: {exc.message}")
    assert not failures, f"{manifests.overlay} on Kubernetes {version}:\n" + "\n".join(failures)
