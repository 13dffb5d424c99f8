"""The client installs alone: `pip install ./client` into a fresh virtualenv (from PyPI)
gives a working `dropfile` command and typed SDK, and none of the server's dependencies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

CLIENT = Path(ROOT) / "client"
# The server's heavy dependencies; the client needs none of them.
SERVER_ONLY = {"grpcio", "sqlalchemy", "boto3", "botocore", "protobuf", "psycopg2-binary"}
INSTALL_TIMEOUT = 600  # a fresh venv fetching httpx, rich and google-crc32c from PyPI


def run(argv: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(argv)} took longer than {timeout} s")
    assert result.returncode == 0, f"{' '.join(argv)}: exit {result.returncode}\n{result.stderr}"
    return result.stdout


def test_the_client_declares_only_what_it_imports():
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]
    }
    assert names == {"httpx", "rich", "google-crc32c"}
    assert project["name"] == "dropfile-client"
    assert project["scripts"] == {"dropfile": "dropfile_client.cli:main"}
    assert (CLIENT / "dropfile_client" / "py.typed").is_file()


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_pip_install_client_in_a_fresh_virtualenv(tmp_path):
    # A copy, so that the build's own files (build/, *.egg-info) never land in the clone.
    source = tmp_path / "client"
    shutil.copytree(
        CLIENT, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", str(source)],
        timeout=INSTALL_TIMEOUT,
        env=env,
    )

    help_text = run([str(venv / "bin" / "dropfile"), "--help"], timeout=60, env=env)
    assert help_text.startswith("usage: dropfile"), help_text
    for command in ("signup", "login", "upload", "ls", "get", "rm"):
        assert command in help_text, command

    installed = {
        entry["name"].lower()
        for entry in json.loads(
            run([str(python), "-m", "pip", "list", "--format=json"], timeout=60, env=env)
        )
    }
    assert {"dropfile-client", "httpx", "rich", "google-crc32c"} <= installed
    assert not SERVER_ONLY & installed, SERVER_ONLY & installed
    # Nor can the server's modules be imported from there (nothing leaks in from the clone).
    probe = (
        "import importlib.util, sys; "
        "sys.exit(any(importlib.util.find_spec(m) for m in "
        "('grpc', 'sqlalchemy', 'boto3', 'services', 'gateway', 'dropfile')))"
    )
    assert subprocess.run([str(python), "-c", probe], cwd=tmp_path, env=env).returncode == 0

    # PEP 561: the installed package carries its types.
    located = run(
        [str(python), "-c", "import dropfile_client, pathlib; print(dropfile_client.__file__)"],
        timeout=60,
        env=env,
    )
    package = Path(located.strip()).parent
    assert package.is_relative_to(venv), package
    assert (package / "py.typed").is_file()
