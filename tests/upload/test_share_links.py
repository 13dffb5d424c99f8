"""Share links at the gRPC level: only the owner of an uploaded file creates, lists and
revokes its links; only Dropfile's services resolve them; a limited link never serves
more downloads than its limit, however many ask at once; a deleted file takes its links
along."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest
from sqlalchemy import text

from dropfile.upload.v1 import share_pb2, share_pb2_grpc, upload_pb2

from .helpers import assert_code, confirm_request, initiate, race, upload_file


@pytest.fixture(scope="module")
def share_channel(isolated_upload) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{isolated_upload.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def shares(share_channel) -> share_pb2_grpc.ShareServiceStub:
    return share_pb2_grpc.ShareServiceStub(share_channel)


@pytest.fixture(scope="module")
def resolver(share_channel) -> share_pb2_grpc.ShareInternalServiceStub:
    return share_pb2_grpc.ShareInternalServiceStub(share_channel)


def an_address() -> str:
    """A client address of the test's own, so that its failures count for it alone."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def uploaded(api, internal, user, service_metadata, data: bytes, **kwargs):
    upload = upload_file(api, user, data, **kwargs)
    internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    return upload


def resolve(resolver, service_metadata, token: str, *, password: str = "", address: str = ""):
    return resolver.ResolveLink(
        share_pb2.ResolveLinkRequest(
            token=token, password=password, client_address=address or an_address()
        ),
        metadata=service_metadata,
    )


def test_the_owner_creates_a_link_whose_token_only_its_hash_is_stored(
    api, internal, shares, resolver, alice, service_metadata, db_engine
):
    data = b"quarterly numbers\n" * 100
    upload = uploaded(api, internal, alice, service_metadata, data, name="Q3 report.txt")
    created = shares.CreateLink(
        share_pb2.CreateLinkRequest(file_id=upload.file_id), metadata=alice.metadata
    )
    assert len(created.token) >= 43  # 256 random bits, URL-safe
    link = created.link
    assert link.file_id == upload.file_id
    assert not link.HasField("max_downloads") and not link.password_protected
    lifetime = link.expires_at.ToDatetime() - link.created_at.ToDatetime()
    assert abs(lifetime.total_seconds() - 7 * 86400) < 5  # the default: 7 days
    with db_engine.connect() as connection:
        row = (
            connection.execute(
                text("SELECT * FROM share_links WHERE id = :id"), {"id": link.link_id}
            )
            .mappings()
            .one()
        )
    assert row["token_hash"] == hashlib.sha256(created.token.encode()).hexdigest()
    assert created.token not in {str(value) for value in row.values()}

    resolved = resolve(resolver, service_metadata, created.token)
    assert resolved.file_name == "Q3 report.txt"
    download = httpx.get(resolved.url, timeout=30)
    assert download.status_code == 200 and download.content == data
    assert download.headers["content-disposition"].startswith("attachment")
    assert "Q3 report.txt" in download.headers["content-disposition"]

    listed = shares.ListLinks(
        share_pb2.ListLinksRequest(file_id=upload.file_id), metadata=alice.metadata
    ).links
    assert [(item.link_id, item.download_count) for item in listed] == [(link.link_id, 1)]


def test_another_user_gets_not_found_for_the_owners_file_and_links(
    api, internal, shares, resolver, alice, bob, service_metadata
):
    upload = uploaded(api, internal, alice, service_metadata, b"mine")
    created = shares.CreateLink(
        share_pb2.CreateLinkRequest(file_id=upload.file_id), metadata=alice.metadata
    )
    for call, request in [
        (shares.CreateLink, share_pb2.CreateLinkRequest(file_id=upload.file_id)),
        (shares.ListLinks, share_pb2.ListLinksRequest(file_id=upload.file_id)),
    ]:
        err = assert_code(grpc.StatusCode.NOT_FOUND, call, request, metadata=bob.metadata)
        assert err.details() == "file not found"
    err = assert_code(
        grpc.StatusCode.NOT_FOUND,
        shares.RevokeLink,
        share_pb2.RevokeLinkRequest(link_id=created.link.link_id),
        metadata=bob.metadata,
    )
    assert err.details() == "link not found"
    # Bob's attempts changed nothing: the link works, and is Alice's to revoke.
    assert resolve(resolver, service_metadata, created.token).url
    shares.RevokeLink(
        share_pb2.RevokeLinkRequest(link_id=created.link.link_id), metadata=alice.metadata
    )
    assert_code(grpc.StatusCode.NOT_FOUND, resolve, resolver, service_metadata, created.token)


def test_only_uploaded_files_are_shared_and_bad_requests_are_refused(
    api, internal, shares, alice, service_metadata
):
    in_progress = initiate(api, alice, 100)
    err = assert_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        shares.CreateLink,
        share_pb2.CreateLinkRequest(file_id=in_progress.file_id),
        metadata=alice.metadata,
    )
    assert "uploaded" in err.details()
    upload = uploaded(api, internal, alice, service_metadata, b"x")
    for request in [
        share_pb2.CreateLinkRequest(file_id="not-a-uuid"),
        share_pb2.CreateLinkRequest(file_id=upload.file_id, expires_in_seconds=59),
        share_pb2.CreateLinkRequest(file_id=upload.file_id, expires_in_seconds=31 * 86400),
        share_pb2.CreateLinkRequest(file_id=upload.file_id, max_downloads=0),
        share_pb2.CreateLinkRequest(file_id=upload.file_id, password="é" * 37),  # 74 bytes
    ]:
        assert_code(
            grpc.StatusCode.INVALID_ARGUMENT, shares.CreateLink, request, metadata=alice.metadata
        )
    assert_code(
        grpc.StatusCode.NOT_FOUND,
        shares.CreateLink,
        share_pb2.CreateLinkRequest(file_id=str(uuid.uuid4())),
        metadata=alice.metadata,
    )
    assert_code(
        grpc.StatusCode.UNAUTHENTICATED,
        shares.CreateLink,
        share_pb2.CreateLinkRequest(file_id=upload.file_id),
    )


def test_only_services_resolve_links(api, internal, shares, resolver, alice, service_metadata):
    upload = uploaded(api, internal, alice, service_metadata, b"y")
    created = shares.CreateLink(
        share_pb2.CreateLinkRequest(file_id=upload.file_id), metadata=alice.metadata
    )
    request = share_pb2.ResolveLinkRequest(token=created.token, client_address=an_address())
    for metadata in (None, alice.metadata, [("x-dropfile-service-token", "x" * 43)]):
        err = assert_code(
            grpc.StatusCode.PERMISSION_DENIED, resolver.ResolveLink, request, metadata=metadata
        )
        assert "services only" in err.details()


def test_a_password_protected_link(api, internal, shares, resolver, alice, service_metadata):
    upload = uploaded(api, internal, alice, service_metadata, b"secret plans")
    created = shares.CreateLink(
        share_pb2.CreateLinkRequest(file_id=upload.file_id, password="open sesame"),
        metadata=alice.metadata,
    )
    assert created.link.password_protected
    err = assert_code(
        grpc.StatusCode.FAILED_PRECONDITION, resolve, resolver, service_metadata, created.token
    )
    assert "password" in err.details()
    wrong = assert_code(
        grpc.StatusCode.NOT_FOUND,
        resolve,
        resolver,
        service_metadata,
        created.token,
        password="open sesame!",
    )
    unknown = assert_code(grpc.StatusCode.NOT_FOUND, resolve, resolver, service_metadata, "A" * 43)
    assert wrong.details() == unknown.details()  # the same refusal
    resolved = resolve(resolver, service_metadata, created.token, password="open sesame")
    assert httpx.get(resolved.url, timeout=30).content == b"secret plans"
    # Asking for the password counted no download; the right one counted one.
    listed = shares.ListLinks(
        share_pb2.ListLinksRequest(file_id=upload.file_id), metadata=alice.metadata
    ).links
    assert listed[0].download_count == 1


def test_a_download_limit_holds_under_concurrent_downloads(
    api, internal, shares, resolver, alice, service_metadata
):
    upload = uploaded(api, internal, alice, service_metadata, b"limited edition")
    created = shares.CreateLink(
        share_pb2.CreateLinkRequest(file_id=upload.file_id, max_downloads=3),
        metadata=alice.metadata,
    )
    address = an_address()
    outcomes = race(
        [lambda: resolve(resolver, service_metadata, created.token, address=address)] * 8
    )
    served = [o for o in outcomes if isinstance(o, share_pb2.ResolveLinkResponse)]
    assert len(served) == 3
    assert [o for o in outcomes if o not in served] == [grpc.StatusCode.NOT_FOUND] * 5
    listed = shares.ListLinks(
        share_pb2.ListLinksRequest(file_id=upload.file_id), metadata=alice.metadata
    ).links
    assert listed[0].download_count == 3 and listed[0].max_downloads == 3


def test_deleting_the_file_deletes_its_links(
    api, internal, shares, resolver, alice, service_metadata, db_engine
):
    upload = uploaded(api, internal, alice, service_metadata, b"short-lived")
    created = [
        shares.CreateLink(
            share_pb2.CreateLinkRequest(file_id=upload.file_id), metadata=alice.metadata
        )
        for _ in range(2)
    ]
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=upload.file_id), metadata=alice.metadata)
    for link in created:
        assert_code(grpc.StatusCode.NOT_FOUND, resolve, resolver, service_metadata, link.token)
    with db_engine.connect() as connection:
        left = connection.execute(
            text("SELECT count(*) FROM share_links WHERE file_id = :id"), {"id": upload.file_id}
        ).scalar()
    assert left == 0


def test_guess_limits_refuse_rather_than_open_up_when_redis_is_unreachable():
    import socket

    from services.common.clients import redis_client
    from services.common.errors import Unavailable
    from services.upload.sharing.throttle import GuessPolicy, GuessThrottle

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    throttle = GuessThrottle(
        redis_client(f"redis://127.0.0.1:{port}/0", timeout_seconds=0.5, retries=0),
        GuessPolicy(),
    )
    for attempt in (
        lambda: throttle.check_address("10.0.0.1"),
        lambda: throttle.failed("10.0.0.1"),
        lambda: throttle.admit_password(uuid.uuid4(), "10.0.0.1"),
    ):
        with pytest.raises(Unavailable) as refused:
            attempt()
        assert refused.value.retry_after and refused.value.reason == "THROTTLE_UNAVAILABLE"
