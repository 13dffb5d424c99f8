"""The measured scenario, end to end: several `dropfile upload` processes at once through
the gateway, and PostgreSQL restarting (immediate shutdown, down a second) once parts are
being recorded. On main some uploads died with `internal error`; now the coordinator
waits the restart out and every upload completes byte-exact."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.slow

DROPFILE_BIN = Path(ROOT) / ".venv" / "bin" / "dropfile"
MIB = 1024 * 1024
UPLOADS = 4
SIZE = 25 * MIB  # five 5 MiB parts each


def _env(url: str, config_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env.update(
        {"DROPFILE_CONFIG_DIR": str(config_dir), "DROPFILE_URL": url, "PYTHONUNBUFFERED": "1"}
    )
    return env


def _recorded_chunks(url: str) -> int:
    try:
        conn = psycopg2.connect(url, connect_timeout=2)
    except psycopg2.OperationalError:
        return 0
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM chunks")
            return cur.fetchone()[0]
    finally:
        conn.close()  # (psycopg2's `with` ends the transaction, not the connection)


def test_concurrent_cli_uploads_survive_a_database_restart(
    coordinator, gateway_in_front, own_postgres, s3, fault_bucket, tmp_path
):
    assert DROPFILE_BIN.exists(), f"{DROPFILE_BIN} is missing: pip install -e ."
    url = gateway_in_front(coordinator().running.port)
    signed_in = tmp_path / "config"
    signup = subprocess.run(
        [
            str(DROPFILE_BIN),
            "signup",
            "--email",
            f"faults-{uuid.uuid4().hex[:10]}@example.com",
            "--name",
            "Ada",
            "--password-stdin",
        ],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        env=_env(url, signed_in),
        timeout=60,
    )
    assert signup.returncode == 0, signup.stderr
    sources, processes = [], []
    for index in range(UPLOADS):
        config = tmp_path / f"config-{index}"
        shutil.copytree(signed_in, config)
        source = tmp_path / f"big-{index}.bin"
        source.write_bytes(os.urandom(SIZE))
        sources.append(source)
        # --no-wait: no event processor confirms this coordinator's uploads; the bytes
        # are checked in storage instead. Output to files: progress fills a pipe.
        with (
            open(tmp_path / f"out-{index}", "w") as out,
            open(tmp_path / f"err-{index}", "w") as err,
        ):
            processes.append(
                subprocess.Popen(
                    [str(DROPFILE_BIN), "upload", "--no-wait", str(source)],
                    stdout=out,
                    stderr=err,
                    env=_env(url, config),
                )
            )

    before = _recorded_chunks(own_postgres.url)
    wait_until(
        lambda: _recorded_chunks(own_postgres.url) > before,
        timeout=30,
        interval=0.02,
        what="a first part to be recorded",
    )
    own_postgres.stop("immediate")
    restart = threading.Timer(1.0, own_postgres.start)
    restart.start()
    for process in processes:
        process.wait(timeout=60)
    restart.join()

    outputs = [(tmp_path / f"out-{i}").read_text() for i in range(UPLOADS)]
    for index, process in enumerate(processes):
        assert process.returncode == 0, (
            f"exit {process.returncode}: {(tmp_path / f'err-{index}').read_text()[-2000:]}"
        )
    keys = {
        obj["Key"].rsplit("/", 1)[1]: obj["Key"]
        for obj in s3.list_objects_v2(Bucket=fault_bucket, Prefix="users/").get("Contents", [])
    }
    for source, out in zip(sources, outputs):
        file_id = out.strip().splitlines()[-1].rsplit(" as ", 1)[1]
        stored = s3.get_object(Bucket=fault_bucket, Key=keys[file_id])["Body"].read()
        assert stored == source.read_bytes()
