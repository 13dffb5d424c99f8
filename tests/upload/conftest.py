"""An upload coordinator of these tests' own: on a bucket that sends no events (so no
event processor elsewhere in the session confirms our uploads behind our back) and on a
Redis database of its own (so FLUSHDB here disturbs nobody). Same PostgreSQL database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from services.upload.settings import UploadSettings
from tests.conftest import leased_redis_db, settings_for

from .helpers import RunningUpload, running_upload_server


@pytest.fixture(scope="session")
def isolated_bucket(s3) -> str:
    name = f"dropfile-upload-tests-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def isolated_redis_url(redis_url) -> Iterator[str]:
    """A Redis database no other run holds (leases as tests/conftest.py does, from the top
    down, so it does not take the one the session fixture would)."""
    taken = int(redis_url.rsplit("/", 1)[1])
    yield from leased_redis_db(i for i in range(15, 0, -1) if i != taken)


@pytest.fixture(scope="session")
def isolated_settings(common_settings, isolated_bucket, isolated_redis_url) -> UploadSettings:
    return settings_for(
        UploadSettings, common_settings, s3_bucket=isolated_bucket, cloud_rd_uri=isolated_redis_url
    )


@pytest.fixture(scope="session")
def isolated_upload(isolated_settings) -> Iterator[RunningUpload]:
    with running_upload_server(isolated_settings) as running:
        yield running


@pytest.fixture(scope="session")
def api(isolated_upload):
    """UploadServiceStub of the isolated coordinator."""
    return isolated_upload.stub


@pytest.fixture(scope="session")
def internal(isolated_upload):
    """UploadInternalServiceStub of the isolated coordinator."""
    return isolated_upload.internal_stub


@pytest.fixture(scope="session")
def bucket(isolated_bucket) -> str:
    return isolated_bucket


@pytest.fixture(scope="session")
def sessions_redis(isolated_redis_url) -> redis.Redis:
    return redis.Redis.from_url(isolated_redis_url, decode_responses=True)


@pytest.fixture(scope="session")
def service_metadata(service_token):
    return [("x-dropfile-service-token", service_token)]


@dataclass(frozen=True)
class User:
    user_id: str
    metadata: list


@pytest.fixture
def new_user(make_token):
    """Makes users: each with its own id and a valid access token."""
    import uuid

    def make() -> User:
        user_id = str(uuid.uuid4())
        return User(user_id, [("authorization", f"Bearer {make_token(user_id=user_id)}")])

    return make


@pytest.fixture
def alice(new_user) -> User:
    return new_user()


@pytest.fixture
def bob(new_user) -> User:
    return new_user()
