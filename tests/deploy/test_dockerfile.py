"""The Dockerfile, read as text (Docker is not available to build it here): pinned bases,
a non-root final stage without build tools or secrets, and an image that holds every
module the manifests run."""

from __future__ import annotations

import re
import subprocess
import tomllib

from .conftest import ROOT, is_dropfile_image, python_module

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        lines.append((keyword.upper(), rest.strip()))
        current = ""
    return lines


def stages() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(base image with ARG defaults substituted, stage name, instructions) per stage."""
    args = {}
    found = []
    for keyword, rest in instructions():
        if keyword == "ARG" and not found and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.strip())
            found.append((image, name.strip(), []))
        elif found:
            found[-1][2].append((keyword, rest))
    return found


def test_base_images_are_pinned_to_a_full_version():
    names = {name for _, name, _ in stages()}
    for image, _, _ in stages():
        if image in names:
            continue  # an earlier stage
        tag = image.split("@", 1)[0].rsplit(":", 1)[-1]
        assert re.match(r"\d+\.\d+\.\d+-", tag), f"{image}: pin a full version (x.y.z)"
    python = [image for image, _, _ in stages() if image.startswith("python:")]
    assert python and all(re.match(r"python:3\.11\.\d+-slim-bookworm", i) for i in python)


def test_final_stage_runs_as_a_numeric_non_root_user():
    _, name, body = stages()[-1]
    users = [rest for keyword, rest in body if keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, users[-1]


def test_final_stage_has_no_build_tools_or_secrets():
    _, _, body = stages()[-1]
    text = "\n".join(f"{k} {r}" for k, r in body)
    assert not re.search(r"apt-get install|build-essential|gcc|grpc_tools|npm ", text)
    for keyword, rest in instructions():
        if keyword in ("ENV", "ARG"):
            assert not re.search(
                r"(PASSWORD|SECRET|TOKEN|PRIVATE_KEY|AWS_ACCESS)", rest, re.IGNORECASE
            ), rest


def test_manifests_run_as_the_images_user(rendered):
    _, _, body = stages()[-1]
    uid = int([rest for keyword, rest in body if keyword == "USER"][-1].split(":")[0])
    for manifests in rendered.values():
        for workload in manifests.workloads():
            for container in workload.all_containers():
                if is_dropfile_image(container["image"]):
                    user = container.get("securityContext", {}).get(
                        "runAsUser", workload.spec["securityContext"].get("runAsUser")
                    )
                    assert user == uid, f"{workload.name}/{container['name']}"


def test_every_module_the_manifests_run_is_in_the_image(rendered):
    copied = {
        rest.split()[0].rstrip("/")
        for keyword, rest in instructions()
        if keyword == "COPY" and not rest.startswith("--from")
    }
    dependencies = {
        re.split(r"[\[<>=!~ ]", dep, maxsplit=1)[0].lower()
        for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    for manifests in rendered.values():
        for workload in manifests.workloads():
            for container in workload.all_containers():
                if not is_dropfile_image(container["image"]):
                    continue
                module = python_module(container)
                assert module, f"{workload.name}/{container['name']}: no `python -m` command"
                top = module.split(".")[0]
                if (ROOT / top).is_dir():
                    path = ROOT / module.replace(".", "/")
                    assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), (
                        f"{workload.name} runs {module}, which is not in the repository"
                    )
                    assert top in copied, f"the Dockerfile does not COPY {top}/"
                else:
                    assert top in dependencies, f"{module} is neither ours nor a dependency"


def test_migrations_run_from_the_working_directory():
    # `alembic upgrade head` and `alembic current` read ./alembic.ini -> ./migrations.
    _, _, body = stages()[-1]
    workdir = [rest for keyword, rest in body if keyword == "WORKDIR"][-1]
    copies = [rest for keyword, rest in body if keyword == "COPY"]
    assert workdir == "/app"
    assert any(c.startswith("alembic.ini") for c in copies)
    assert any(c.startswith("migrations/") for c in copies)


def test_build_context_admits_no_local_state():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing and admit what the image needs"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert not admitted & {".env", ".venv", "gen", ".dropfile", "tests", ".git"}
    assert {"**/.env", "web/node_modules"} <= set(patterns)


def test_kind_script_is_valid_bash():
    result = subprocess.run(
        ["bash", "-n", str(ROOT / "scripts" / "kind-up.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_audit_command_ships_in_the_image():
    """`python -m services.audit` is in the package the build installs, and the build
    imports it, so a broken import fails the build rather than the first audit."""
    assert (ROOT / "services" / "audit" / "__main__.py").is_file()
    _, _, build = [stage for stage in stages() if stage[1] == "build"][0]
    copied = [rest for keyword, rest in build if keyword == "COPY"]
    assert any(rest.startswith("services/") for rest in copied)
    runs = " ".join(rest for keyword, rest in build if keyword == "RUN")
    assert "services.audit.__main__" in runs
