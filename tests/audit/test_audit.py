"""The audit (`python -m services.audit`, `services.audit.run_audit`) against real
PostgreSQL and moto: each kind of finding is planted for real (behind Dropfile's back, as
storage or an operator would), the audit reports exactly those, in text and JSON, `--repair`
does what it says, and a second run finds only what repair said it left.

Each test has a database and a bucket of its own: the audit reads every row of its
database, and the session database holds other tests' files of other buckets."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass

import psycopg2
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from services.audit import FindingKind, run_audit
from services.common.db import make_engine
from services.upload.settings import UploadSettings
from tests.conftest import PG_ADMIN_URL, ROOT, settings_for
from tests.upload.helpers import (
    confirm_request,
    initiate,
    put_parts,
    record_parts,
    running_upload_server,
    upload_file,
)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class User:
    user_id: str
    metadata: list


@pytest.fixture
def audit_database_url():
    """A fresh database of this test's own, migrated to head; dropped afterwards."""
    name = f"dropfile_audit_{os.getpid()}_{secrets.token_hex(3)}"
    admin = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    config = Config(os.path.join(ROOT, "alembic.ini"))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    yield url
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def stack(common_settings, audit_database_url, s3):
    """An upload coordinator on this test's database and bucket, and its settings (what
    the audit reads too)."""
    bucket = f"dropfile-audit-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    settings = settings_for(
        UploadSettings,
        common_settings,
        cloud_db_uri=audit_database_url,
        s3_bucket=bucket,
        sqs_queue_url=None,
    )
    with running_upload_server(settings) as running:
        yield running


@pytest.fixture
def user(make_token) -> User:
    user_id = str(uuid.uuid4())
    return User(user_id, [("authorization", f"Bearer {make_token(user_id=user_id)}")])


def confirmed_file(stack, user, size: int):
    upload = upload_file(stack.stub, user, size)
    stack.internal_stub.ConfirmUpload(
        confirm_request(upload),
        metadata=[("x-dropfile-service-token", stack.settings.service_token.get_secret_value())],
    )
    return upload


def healthy_state(stack, user):
    """What a working system holds: an UPLOADED file, a completed one awaiting its event,
    and an upload receiving parts (its multipart upload expected)."""
    confirmed_file(stack, user, 1500)
    upload_file(stack.stub, user, 700)
    receiving = initiate(stack.stub, user, 5 * 1024 * 1024 + 10)
    put_parts(receiving)
    record_parts(stack.stub, user, receiving)


def audit_command(settings: UploadSettings, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "CLOUD_DB_URI": str(settings.cloud_db_uri),
        "CLOUD_RD_URI": str(settings.cloud_rd_uri),
        "S3_BUCKET": settings.s3_bucket,
        "AWS_ENDPOINT_URL": settings.s3_endpoint,
        "AWS_REGION": settings.aws_region,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.audit", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def status_of(database_url: str, file_id: str) -> str:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("select status from files where id = :id"), {"id": file_id}
            ).scalar_one()
    finally:
        engine.dispose()


def test_a_clean_state_has_zero_findings(stack, user, tmp_path):
    healthy_state(stack, user)
    report = run_audit(stack.settings)
    assert report.clean and report.findings == []
    run = audit_command(stack.settings, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "clean" in run.stdout.splitlines()[0]
    run = audit_command(stack.settings, tmp_path, "--json")
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert (document["clean"], document["findings"], document["actions"]) == (True, [], [])
    assert set(document["counts"].values()) == {0}


def test_each_kind_of_finding_is_reported_repaired_and_gone(
    stack, user, s3, tmp_path, audit_database_url
):
    healthy_state(stack, user)
    bucket = stack.settings.s3_bucket
    # An object no row knows.
    stray = f"users/{uuid.uuid4()}/{uuid.uuid4()}"
    s3.put_object(Bucket=bucket, Key=stray, Body=b"x" * 42)
    # An UPLOADED file whose object is gone.
    gone = confirmed_file(stack, user, 900)
    s3.delete_object(Bucket=bucket, Key=gone.s3_key)
    # An UPLOADED file whose object is of another size.
    resized = confirmed_file(stack, user, 800)
    s3.put_object(Bucket=bucket, Key=resized.s3_key, Body=b"y" * 801)
    # A multipart upload no upload knows.
    orphan_key = f"users/{user.user_id}/{uuid.uuid4()}"
    orphan_id = s3.create_multipart_upload(Bucket=bucket, Key=orphan_key)["UploadId"]
    expected = {
        (FindingKind.UNKNOWN_OBJECT.value, stray),
        (FindingKind.MISSING_OBJECT.value, gone.s3_key),
        (FindingKind.WRONG_SIZE.value, resized.s3_key),
        (FindingKind.ORPHAN_MULTIPART_UPLOAD.value, orphan_key),
    }

    report = run_audit(stack.settings)
    assert {(f.kind.value, f.s3_key) for f in report.findings} == expected
    [orphan] = report.of_kind(FindingKind.ORPHAN_MULTIPART_UPLOAD)
    assert orphan.upload_id == orphan_id
    [wrong] = report.of_kind(FindingKind.WRONG_SIZE)
    assert (wrong.file_id, wrong.expected_size, wrong.stored_size) == (resized.file_id, 800, 801)

    run = audit_command(stack.settings, tmp_path, "--json")
    assert run.returncode == 1, run.stderr
    document = json.loads(run.stdout)
    assert {(f["kind"], f["s3_key"]) for f in document["findings"]} == expected
    assert document["clean"] is False and document["actions"] == []
    assert document["counts"] == {kind: 1 for kind, _ in expected}

    run = audit_command(stack.settings, tmp_path)
    assert run.returncode == 1, run.stderr
    for kind, key in expected:
        assert f"{kind} (1):" in run.stdout and f"  {key}: " in run.stdout

    # Nothing was repaired by looking.
    assert status_of(audit_database_url, gone.file_id) == "UPLOADED"

    run = audit_command(stack.settings, tmp_path, "--repair", "--json")
    assert run.returncode == 1, run.stderr
    actions = {a["finding"]["kind"]: a for a in json.loads(run.stdout)["actions"]}
    assert {kind: action["done"] for kind, action in actions.items()} == {
        "orphan_multipart_upload": True,
        "missing_object": True,
        "wrong_size": True,
        "unknown_object": False,
    }
    assert "aborted" in actions["orphan_multipart_upload"]["what"]
    assert "marked FAILED" in actions["missing_object"]["what"]
    assert "left in place" in actions["unknown_object"]["what"]
    # What it says it did, it did.
    assert status_of(audit_database_url, gone.file_id) == "FAILED"
    assert status_of(audit_database_url, resized.file_id) == "FAILED"
    assert not s3.list_multipart_uploads(Bucket=bucket, Prefix=orphan_key).get("Uploads")
    assert s3.head_object(Bucket=bucket, Key=stray)["ContentLength"] == 42  # never deleted
    assert s3.head_object(Bucket=bucket, Key=resized.s3_key)["ContentLength"] == 801

    # A second run finds only what repair said it left; once an operator removes it, none.
    again = run_audit(stack.settings, repair=True)
    assert [(f.kind, f.s3_key) for f in again.findings] == [(FindingKind.UNKNOWN_OBJECT, stray)]
    s3.delete_object(Bucket=bucket, Key=stray)
    run = audit_command(stack.settings, tmp_path, "--repair")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run_audit(stack.settings).clean


def test_a_multipart_upload_younger_than_the_minimum_age_is_not_judged(stack, user, s3):
    key = f"users/{user.user_id}/{uuid.uuid4()}"
    s3.create_multipart_upload(Bucket=stack.settings.s3_bucket, Key=key)
    found = run_audit(stack.settings, multipart_min_age_seconds=0)
    assert [f.s3_key for f in found.findings] == [key]
    # moto dates every multipart upload in 2010: a minimum age reaching further back
    # leaves it alone (an initiation whose row is not committed yet).
    assert run_audit(stack.settings, multipart_min_age_seconds=100 * 365 * 86400).clean


def test_the_command_fails_clearly_when_a_backend_is_unreachable(stack, tmp_path):
    settings = stack.settings.model_copy(
        update={"cloud_db_uri": "postgresql://postgres@127.0.0.1:1/nothing"}
    )
    run = audit_command(settings, tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith("audit failed: ") and run.stdout == ""
