"""Device sessions under abuse (issue #14, items 4 and 5), on the real stack: two tabs
refreshing with one refresh token both keep the session, a refresh token reused after its
grace window ends the session and its access tokens, and signing out ends access at once
in every service (auth, upload, events) and ends the session's open event streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest

from dropfile.auth.v1 import auth_pb2, auth_pb2_grpc
from dropfile.events.v1 import events_pb2, events_pb2_grpc
from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc
from gateway.errors import rpc_error_details
from services.auth.server import create_server as create_auth_server
from services.auth.settings import AuthSettings
from services.upload.server import create_server as create_upload_server
from services.upload.settings import UploadSettings
from tests.conftest import settings_for, wait_until
from tests.fixtures.gateway import serve_gateway

from .conftest import PASSWORD, set_cookies, sign_up, unique_email
from .test_live_events import SseStream

# Signed out → refused within 1 s (the bound); the margin is for a loaded machine.
REFUSED_WITHIN = 1.0
LOAD_MARGIN = 1.0
# Nothing listens here: a Redis that cannot be reached.
DEAD_REDIS = "redis://127.0.0.1:9/0"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def code_of(call, *args, **kwargs) -> grpc.StatusCode:
    try:
        call(*args, **kwargs)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def refused_within(check, what: str) -> float:
    """Polls `check` (True once refused) and returns the seconds it took."""
    started = time.monotonic()
    wait_until(check, timeout=REFUSED_WITHIN + LOAD_MARGIN, interval=0.02, what=what)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def upload_api(upload_channel):
    return upload_pb2_grpc.UploadServiceStub(upload_channel)


@pytest.fixture(scope="module")
def events_api(events_channel):
    return events_pb2_grpc.EventsServiceStub(events_channel)


@pytest.fixture
def clients(gateway_url) -> Iterator:
    made: list[httpx.Client] = []

    def make(**cookies) -> httpx.Client:
        made.append(httpx.Client(base_url=gateway_url, timeout=60, cookies=cookies))
        return made[-1]

    yield make
    for client in made:
        client.close()


class GrpcWatch:
    """A WatchFileEvents stream read by a thread of its own."""

    def __init__(self, stub, token: str) -> None:
        self.call = stub.WatchFileEvents(
            events_pb2.WatchFileEventsRequest(heartbeat_seconds=1), metadata=bearer(token)
        )
        self.replies = 0
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for _ in self.call:
                self.replies += 1
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self.ended.set()


# -- item 4: refresh that survives two tabs -----------------------------------------------


@pytest.mark.slow
def test_two_tabs_refreshing_at_once_both_keep_the_session(clients):
    browser = clients()
    issued = set_cookies(sign_up(browser))
    session = {
        "refresh_token": issued["refresh_token"]["value"],
        "device_id": issued["device_id"]["value"],
    }
    tabs = [clients(**session) for _ in range(2)]
    start = threading.Barrier(len(tabs))
    answers: list[httpx.Response | None] = [None] * len(tabs)

    def refresh(position: int) -> None:
        start.wait()
        answers[position] = tabs[position].get("/api/auth/refresh")

    threads = [threading.Thread(target=refresh, args=(i,)) for i in range(len(tabs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    # Both tabs hold the same new refresh token, and each its own working access token.
    rotated = {set_cookies(a)["refresh_token"]["value"] for a in answers}
    assert len(rotated) == 1 and session["refresh_token"] not in rotated
    for tab in tabs:
        assert tab.get("/api/auth/authenticate").status_code == 200
        assert tab.get("/api/files/list").status_code == 200
    # The session lives on: the newest token refreshes again, and so does the other tab.
    third = tabs[0].get("/api/auth/refresh")
    assert third.status_code == 200, third.text
    assert tabs[0].get("/api/files/list").status_code == 200
    assert tabs[1].get("/api/auth/refresh").status_code == 200  # the same token, in grace


def test_a_retried_refresh_whose_answer_was_lost_gets_the_same_new_token(auth_stub):
    reply = auth_stub.SignUp(
        auth_pb2.SignUpRequest(email=unique_email(), name="Retry", password=PASSWORD)
    )
    request = auth_pb2.RefreshRequest(
        refresh_token=reply.tokens.refresh_token, device_id=reply.tokens.device_id
    )
    first = auth_stub.Refresh(request).tokens
    retried = auth_stub.Refresh(request).tokens
    assert retried.refresh_token == first.refresh_token
    assert retried.device_id == first.device_id and retried.access_token
    newest = auth_stub.Refresh(
        auth_pb2.RefreshRequest(refresh_token=retried.refresh_token, device_id=retried.device_id)
    ).tokens
    assert (
        auth_stub.Authenticate(
            auth_pb2.AuthenticateRequest(), metadata=bearer(newest.access_token)
        ).user_id
        == reply.user_id
    )


@pytest.fixture(scope="module")
def short_grace_auth(common_settings) -> Iterator[auth_pb2_grpc.AuthServiceStub]:
    """An auth replica (same database and Redis) whose grace window is one second."""
    handle = create_auth_server(
        settings_for(AuthSettings, common_settings, refresh_reuse_grace_seconds=1.0), port=0
    )
    handle.start()
    with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
        yield auth_pb2_grpc.AuthServiceStub(channel)
    handle.stop(0).wait()


@pytest.mark.slow
def test_a_refresh_token_reused_after_the_window_ends_the_session_and_its_access(
    short_grace_auth, upload_api, events_api
):
    auth = short_grace_auth
    signed_up = auth.SignUp(
        auth_pb2.SignUpRequest(email=unique_email(), name="Victim", password=PASSWORD)
    ).tokens
    stolen = auth_pb2.RefreshRequest(
        refresh_token=signed_up.refresh_token, device_id=signed_up.device_id
    )
    current = auth.Refresh(stolen).tokens
    # The owner's access token works everywhere (and is now in every verifier's memory).
    upload_api.ListFiles(upload_pb2.ListFilesRequest(), metadata=bearer(current.access_token))
    auth.Authenticate(auth_pb2.AuthenticateRequest(), metadata=bearer(current.access_token))
    watch = GrpcWatch(events_api, current.access_token)
    wait_until(lambda: watch.replies >= 1, what="the owner's stream to be live")

    time.sleep(1.5)  # past the grace window
    with pytest.raises(grpc.RpcError) as info:
        auth.Refresh(stolen)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in info.value.details()
    # The session is over: the newest refresh token too, and its access tokens everywhere.
    assert (
        code_of(
            auth.Refresh,
            auth_pb2.RefreshRequest(
                refresh_token=current.refresh_token, device_id=current.device_id
            ),
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )
    refused_within(
        lambda: (
            code_of(
                upload_api.ListFiles,
                upload_pb2.ListFilesRequest(),
                metadata=bearer(current.access_token),
            )
            == grpc.StatusCode.UNAUTHENTICATED
        ),
        "upload to refuse the access token",
    )
    assert (
        code_of(
            auth.Authenticate, auth_pb2.AuthenticateRequest(), metadata=bearer(current.access_token)
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert watch.ended.wait(REFUSED_WITHIN + LOAD_MARGIN), "the session's stream lives on"
    assert watch.error.code() == grpc.StatusCode.UNAUTHENTICATED


# -- item 5: sign-out ends access at once ------------------------------------------------


@pytest.mark.slow
def test_sign_out_ends_access_everywhere_within_a_second(clients, upload_api, events_api):
    browser = clients()
    assert sign_up(browser).status_code == 200
    access_token = browser.cookies["access_token"]
    # Used everywhere first, so that every verifier holds the token in its memory.
    assert browser.get("/api/files/list").status_code == 200
    upload_api.ListFiles(upload_pb2.ListFilesRequest(), metadata=bearer(access_token))
    sse = SseStream(browser)
    assert sse.response.status_code == 200
    watch = GrpcWatch(events_api, access_token)
    wait_until(lambda: watch.replies >= 1, what="the gRPC stream to be live")
    # Another device of the same user is not signed out.
    other_device = clients()
    assert (
        other_device.post(
            "/api/auth/signin", json={"user": {"email": _email_of(browser), "password": PASSWORD}}
        ).status_code
        == 200
    )

    assert browser.get("/api/auth/signout").status_code == 200
    stale = clients(access_token=access_token)  # a copy of the signed-out token
    took = refused_within(
        lambda: stale.get("/api/files/list").status_code == 401, "the gateway's list to be refused"
    )
    assert took <= REFUSED_WITHIN + LOAD_MARGIN
    assert "signed out" in stale.get("/api/files/list").json()["error"]
    assert stale.get("/api/v2/quota").status_code == 401
    assert stale.get("/api/auth/authenticate").status_code == 401
    assert (
        code_of(upload_api.ListFiles, upload_pb2.ListFilesRequest(), metadata=bearer(access_token))
        == grpc.StatusCode.UNAUTHENTICATED
    )
    refused = GrpcWatch(events_api, access_token)
    assert refused.ended.wait(10) and refused.error.code() == grpc.StatusCode.UNAUTHENTICATED
    # The streams that were open end too.
    assert watch.ended.wait(REFUSED_WITHIN + LOAD_MARGIN), "the gRPC stream lives on"
    assert watch.error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert sse.ended.wait(REFUSED_WITHIN + LOAD_MARGIN), "the SSE stream lives on"
    sse.close()
    assert other_device.get("/api/files/list").status_code == 200


def _email_of(client: httpx.Client) -> str:
    import jwt

    return jwt.decode(client.cookies["access_token"], options={"verify_signature": False})["email"]


# -- Redis unreachable: fail closed, never a 500 ------------------------------------------


@pytest.mark.slow
def test_without_redis_tokens_are_refused_as_unavailable_and_sign_out_is_503(
    common_settings, gateway_settings, auth_stub, make_token
):
    """Whether a session was signed out cannot be known: every token is refused with
    UNAVAILABLE and a retry hint (503 + Retry-After through the gateway), never accepted
    unchecked; signing out reports that it did not happen, and the session still works."""
    upload = create_upload_server(
        settings_for(UploadSettings, common_settings, cloud_rd_uri=DEAD_REDIS), port=0
    )
    auth = create_auth_server(
        settings_for(AuthSettings, common_settings, cloud_rd_uri=DEAD_REDIS), port=0
    )
    upload.start()
    auth.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{upload.port}") as channel:
            with pytest.raises(grpc.RpcError) as info:
                upload_pb2_grpc.UploadServiceStub(channel).ListFiles(
                    upload_pb2.ListFilesRequest(), metadata=bearer(make_token())
                )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert rpc_error_details(info.value).retry_after is not None

        settings = gateway_settings.model_copy(
            update={
                "upload_service_addr": f"127.0.0.1:{upload.port}",
                "auth_service_addr": f"127.0.0.1:{auth.port}",
            }
        )
        with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=60) as browser:
            tokens = auth_stub.SignUp(
                auth_pb2.SignUpRequest(email=unique_email(), name="Outage", password=PASSWORD)
            ).tokens
            browser.cookies.update(
                {
                    "access_token": tokens.access_token,
                    "refresh_token": tokens.refresh_token,
                    "device_id": tokens.device_id,
                }
            )
            listed = browser.get("/api/files/list")
            assert listed.status_code == 503 and listed.headers["retry-after"]
            assert "error" in listed.json()
            signed_out = browser.get("/api/auth/signout")
            assert signed_out.status_code == 503 and signed_out.headers["retry-after"]
        # Not signed out after all: the session still refreshes (on a healthy replica).
        auth_stub.Refresh(
            auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token, device_id=tokens.device_id)
        )
    finally:
        upload.stop(0).wait()
        auth.stop(0).wait()
