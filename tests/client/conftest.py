"""Fixtures of the CLI/SDK tests: the `dropfile` command run in-process (main(argv)) or as a
real subprocess (the installed .venv/bin/dropfile), each test with a config folder of its
own, and accounts signed up through the CLI against the real stack (gateway, auth, upload,
events over moto's S3/SQS)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from dropfile_client.cli import main
from tests.conftest import ROOT

from .fault_proxy import FaultProxy

PASSWORD = "correct horse battery"
MIB = 1024 * 1024
PART = 5 * MIB
DROPFILE_BIN = Path(ROOT) / ".venv" / "bin" / "dropfile"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def assert_ok(self) -> Result:
        assert self.code == 0, f"exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"
        return self

    def assert_one_line_error(self, *fragments: str) -> str:
        """Non-zero exit, one `dropfile: ...` line on stderr, no traceback."""
        assert self.code != 0, f"expected failure; stdout: {self.out}"
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("dropfile: "), self.err
        assert "Traceback" not in self.err + self.out
        for fragment in fragments:
            assert fragment in lines[0], lines[0]
        return lines[0]


@dataclass(frozen=True)
class Account:
    email: str
    password: str


class Cli:
    """Runs `dropfile ARGS` in this process, with its own config folder."""

    def __init__(self, capsys, monkeypatch, config_dir: Path) -> None:
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        self.config_dir = config_dir

    @property
    def session_file(self) -> Path:
        return self.config_dir / "session.json"

    def session(self) -> dict:
        return json.loads(self.session_file.read_text())

    def __call__(self, *argv: str, stdin: str = "") -> Result:
        self._capsys.readouterr()  # drop anything printed before
        self._monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(argv))
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def signup(self, email: str | None = None, password: str = PASSWORD) -> Account:
        email = email or f"cli-{uuid.uuid4().hex[:12]}@example.com"
        self(
            "signup", "--email", email, "--name", "Ada", "--password-stdin", stdin=password + "\n"
        ).assert_ok()
        return Account(email, password)


@pytest.fixture
def config_dir(tmp_path, monkeypatch) -> Path:
    """The CLI's config folder for this test (DROPFILE_CONFIG_DIR)."""
    path = tmp_path / "config"
    monkeypatch.setenv("DROPFILE_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def cli(gateway_url, events_server, config_dir, capsys, monkeypatch) -> Cli:
    """`dropfile` in-process against the test stack (DROPFILE_URL), with the events
    processor running so that uploads become UPLOADED."""
    monkeypatch.setenv("DROPFILE_URL", gateway_url)
    for name in (
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    return Cli(capsys, monkeypatch, config_dir)


@pytest.fixture
def account(cli) -> Account:
    """A new account, signed in (the session saved in the test's config folder)."""
    return cli.signup()


@pytest.fixture
def fault_proxy(monkeypatch):
    """A forward proxy every request of the in-process CLI goes through (HTTP_PROXY)."""
    proxy = FaultProxy().start()
    for name, value in proxy.env().items():
        monkeypatch.setenv(name, value)
    yield proxy
    proxy.close()


@pytest.fixture
def dropfile_bin() -> Path:
    """The console script of client/ (`make install` installs it editable)."""
    assert DROPFILE_BIN.exists(), (
        f"{DROPFILE_BIN} is missing: run `make install` (or `.venv/bin/pip install -e ./client`)"
    )
    return DROPFILE_BIN


@pytest.fixture
def subprocess_env(gateway_url, config_dir) -> dict[str, str]:
    """The environment of a `dropfile` subprocess: this test's config folder and server,
    no proxy, no terminal."""
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(
        {
            "DROPFILE_CONFIG_DIR": str(config_dir),
            "DROPFILE_URL": gateway_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_dropfile(
    binary: Path, *args: str, env: dict[str, str], stdin: str = "", timeout: float = 120
) -> Result:
    done = subprocess.run(
        [str(binary), *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout
    )
    return Result(done.returncode, done.stdout, done.stderr)


def write_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def file_entry(cli: Cli, file_id: str) -> dict | None:
    listing = json.loads(cli("ls", "--json").assert_ok().out)
    return next((entry for entry in listing if entry["fileId"] == file_id), None)


def uploaded_file_id(result: Result) -> str:
    """The file id from `uploaded NAME (SIZE) as FILE_ID`."""
    line = result.assert_ok().out.strip().splitlines()[-1]
    assert line.startswith("uploaded "), result.out
    return line.rsplit(" as ", 1)[1]
