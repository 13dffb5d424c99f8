"""Fixtures shared by every test: a database of its own for this run (migrated with
Alembic), a Redis database of its own, moto's server over HTTP for S3 and SQS, a key pair,
and settings objects pointing at all of them. Service fixtures live in tests/fixtures/."""

from __future__ import annotations

import os
import secrets
import time
import uuid

import psycopg2
import pytest
import redis
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.server import ThreadedMotoServer

from services.common.clients import aws_client
from tools import processes

# Every fixture module of tests/fixtures, so no test imports a fixture by name.
pytest_plugins = [
    "tests.fixtures.auth",
    "tests.fixtures.upload",
    "tests.fixtures.events",
    "tests.fixtures.gateway",
    "tests.fixtures.engines",
    "tests.fixtures.stores",
    "tests.fixtures.oidc",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
REGION = "us-east-1"

# The AWS SDK must never reach a real account from a test.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
)
for leaked in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS"):
    os.environ.pop(leaked, None)


def _admin_connection():
    conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def database_url():
    """A fresh PostgreSQL database for this run, migrated to head; dropped afterwards."""
    name = f"dropfile_test_{os.getpid()}_{secrets.token_hex(3)}"
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    config = Config(os.path.join(ROOT, "alembic.ini"))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    yield url
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@pytest.fixture(scope="session")
def db_engine(database_url):
    """An engine on this run's database, for tests that look at rows directly."""
    from services.common.db import make_engine

    engine = make_engine(database_url, pool_size=2)
    yield engine
    engine.dispose()


def leased_redis_db(indexes):
    """Yields the URL of the first Redis database among `indexes` that no other test run
    holds (claimed with a lease in db 0), emptied before and after."""
    admin = redis.Redis.from_url(f"{REDIS_BASE_URL}/0")
    for index in indexes:
        lease = f"dropfile:test-lease:{index}"
        if admin.set(lease, os.getpid(), nx=True, ex=3 * 3600):
            url = f"{REDIS_BASE_URL}/{index}"
            redis.Redis.from_url(url).flushdb()
            yield url
            redis.Redis.from_url(url).flushdb()
            admin.delete(lease)
            return
    pytest.fail("no free Redis database (1-15) for this test run")


@pytest.fixture(scope="session")
def redis_url():
    """A Redis database of this run's own."""
    yield from leased_redis_db(range(1, 16))


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto in server mode, over HTTP on 127.0.0.1."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@pytest.fixture(scope="session")
def service_token() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def storage(moto_endpoint):
    """A bucket, queue, dead-letter queue, CORS rule and event notification made by the
    setup command's own code; returns the names and URLs."""
    from services.setup import SetupSettings, run_setup

    bucket = f"dropfile-test-{secrets.token_hex(4)}"
    queue_name = f"dropfile-events-{secrets.token_hex(4)}"
    queue_url = f"{moto_endpoint}/123456789012/{queue_name}"
    settings = SetupSettings(
        _env_file=None,
        aws_endpoint_url=moto_endpoint,
        aws_region=REGION,
        s3_bucket=bucket,
        sqs_queue_url=queue_url,
        sqs_max_receive_count=2,
    )
    run_setup(settings)
    sqs = aws_client("sqs", region=REGION, endpoint_url=moto_endpoint)
    real_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=f"{queue_name}-dlq")["QueueUrl"]
    return {
        "bucket": bucket,
        "queue_url": real_url,
        "dlq_url": dlq_url,
        "endpoint": moto_endpoint,
        "region": REGION,
    }


@pytest.fixture(scope="session")
def s3(moto_endpoint):
    return aws_client("s3", region=REGION, endpoint_url=moto_endpoint)


@pytest.fixture(scope="session")
def sqs(moto_endpoint):
    return aws_client("sqs", region=REGION, endpoint_url=moto_endpoint)


@pytest.fixture(scope="session")
def common_settings(database_url, redis_url, storage, key_pair, service_token, tmp_path_factory):
    """Settings values every process of the test stack shares (field names, not env)."""
    private_pem, public_pem = key_pair
    return {
        "_env_file": None,
        "dropfile_env": "development",
        "dropfile_keys_dir": tmp_path_factory.mktemp("keys"),
        "cloud_db_uri": database_url,
        "cloud_rd_uri": redis_url,
        "aws_region": storage["region"],
        "aws_endpoint_url": storage["endpoint"],
        "s3_bucket": storage["bucket"],
        "sqs_queue_url": storage["queue_url"],
        "private_key": private_pem,
        "public_key": public_pem,
        "service_token": service_token,
        "dropfile_bind_host": "127.0.0.1",
        # moto says every multipart upload was initiated in 2010, so a reaper's orphan scan
        # could abort an upload between its creation and its row: tests run reapers of
        # their own, explicitly (tests/upload/test_reaper.py).
        "reaper_enabled": False,
        # Every test signs its users up from 127.0.0.1 into this run's Redis database, which
        # counts them against auth's per-address sign-up limit: lifted for every auth server
        # made from these settings (tests/auth/test_throttling.py sets its own).
        "signup_per_address": 1_000_000,
    }


def settings_for(cls, common: dict, **overrides):
    """Builds a settings object of `cls` from the shared values it accepts."""
    fields = set(cls.model_fields) | {"_env_file"}
    values = {k: v for k, v in common.items() if k in fields}
    values.update(overrides)
    return cls(**values)


@pytest.fixture(scope="session")
def make_token(key_pair):
    """Mints access tokens with the stack's private key (claims overridable; `sid` names a
    device session of its own, never signed out), for tests of direct gRPC callers and of
    forged or expired tokens."""
    import jwt

    private_pem, _ = key_pair

    def mint(user_id: str | None = None, email: str = "someone@example.com", **claims) -> str:
        now = int(time.time())
        payload = {
            "sub": user_id or str(uuid.uuid4()),
            "email": email,
            "iat": now,
            "exp": now + 900,
            "jti": str(uuid.uuid4()),
            "iss": "dropfile-auth",
            "aud": "dropfile",
            "sid": str(uuid.uuid4()),
        }
        payload.update(claims)
        return jwt.encode(
            {k: v for k, v in payload.items() if v is not None}, private_pem, algorithm="RS256"
        )

    return mint


def wait_until(predicate, *, timeout: float = 10.0, interval: float = 0.05, what: str = ""):
    """Polls `predicate` until truthy (tools/processes.py's wait_until) and returns its
    value; fails the test with `what` after `timeout` s."""
    try:
        return processes.wait_until(
            predicate, timeout=timeout, interval=interval, what=what or str(predicate)
        )
    except processes.NotReady as exc:
        pytest.fail(str(exc))
