"""Sign-in and sign-up under abuse (issue #14), against real auth servers of their own (so
their limits can be small), the real PostgreSQL and Redis, through the real gateway over
HTTP where the REST answer matters and over gRPC as a direct attacker would.

Password checks are counted with auth's own Prometheus counter
(dropfile_auth_password_hashes_total): an attempt "evaluated" is one bcrypt check run."""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY

from dropfile.auth.v1 import auth_pb2, auth_pb2_grpc
from gateway.errors import rpc_error_details
from gateway.settings import GatewaySettings
from services.auth.server import create_server
from services.auth.settings import AuthSettings
from tests.conftest import settings_for
from tests.fixtures.gateway import serve_gateway
from tests.tcp_proxy import TcpProxy
from tools.processes import ChildProcess, free_port, http_ok

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
CLIENT_ADDRESS = "x-dropfile-client-address"
SERVICE_TOKEN = "x-dropfile-service-token"


def unique_email() -> str:
    return f"throttle-{uuid.uuid4().hex[:12]}@example.com"


def random_address() -> str:
    """A documentation-range address no other test uses (198.18.0.0/15, benchmarking)."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def checks_run() -> float:
    return (
        REGISTRY.get_sample_value("dropfile_auth_password_hashes_total", {"operation": "check"})
        or 0.0
    )


@contextmanager
def auth_server(common_settings, **overrides) -> Iterator[str]:
    """An auth server of the test's own (cheap bcrypt unless overridden); yields its address."""
    settings = settings_for(AuthSettings, common_settings, **{"bcrypt_rounds": 10, **overrides})
    handle = create_server(settings, port=0)
    handle.start()
    try:
        yield f"127.0.0.1:{handle.port}"
    finally:
        handle.stop(0).wait()


@contextmanager
def gateway_for(common_settings, auth_address: str, **overrides) -> Iterator[httpx.Client]:
    """A gateway in front of `auth_address`. It answers throttled attempts at once unless
    told otherwise: these tests count what auth decides, at the pace they choose (holding
    answers back has tests of its own)."""
    overrides.setdefault("throttled_answer_delay_seconds", 0.0)
    settings = settings_for(
        GatewaySettings,
        common_settings,
        auth_service_addr=auth_address,
        upload_service_addr="127.0.0.1:9",
        events_service_addr="127.0.0.1:9",
        **overrides,
    )
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@contextmanager
def stub_of(address: str) -> Iterator[auth_pb2_grpc.AuthServiceStub]:
    with grpc.insecure_channel(address) as channel:
        yield auth_pb2_grpc.AuthServiceStub(channel)


def sign_in_body(email: str, password: str) -> dict:
    return {"user": {"email": email, "password": password}}


def sign_up_over_http(client: httpx.Client, email: str, **kwargs) -> httpx.Response:
    return client.post(
        "/api/auth/signup",
        json={"user": {"email": email, "name": "Ada", "password": PASSWORD}},
        **kwargs,
    )


def register(client: httpx.Client, email: str) -> None:
    """Signs `email` up, leaving `client` without the new session's cookies: its guesses
    are then a stranger's, not the account's own device's."""
    assert sign_up_over_http(client, email).status_code == 200
    client.cookies.clear()


def guess_over_grpc(stub, email: str, metadata=()) -> grpc.StatusCode:
    try:
        stub.SignIn(
            auth_pb2.SignInRequest(email=email, password="wrong password"),
            metadata=metadata,
            timeout=30,
        )
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


# --- Sign-in throttling ------------------------------------------------------------------


def test_120_guesses_at_one_account_within_20_s_evaluate_at_most_10(common_settings):
    """The issue's figure, with the product's default limits, through the gateway: the
    guesses come 24 at a time, so they are counted before bcrypt, not after a failure (and
    the gateway holds each refusal back a second, so fewer connections could not send 120
    in 20 s)."""
    with (
        auth_server(common_settings) as address,
        gateway_for(common_settings, address, throttled_answer_delay_seconds=1.0) as api,
    ):
        email = unique_email()
        register(api, email)
        before = checks_run()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(
                pool.map(
                    lambda _: api.post(
                        "/api/auth/signin", json=sign_in_body(email, "wrong password")
                    ),
                    range(120),
                )
            )
        elapsed = time.monotonic() - started
        evaluated = checks_run() - before
    assert elapsed < 20
    statuses = [answer.status_code for answer in answers]
    assert evaluated <= 10, f"{evaluated:.0f} of 120 guesses were checked"
    assert statuses.count(401) == evaluated
    # The rest are refused: throttled (429), or, on a machine so busy that 24 at once
    # outlast hashing's places (BCRYPT_MAX_PENDING, 16), refused at once as too many (503).
    assert statuses.count(429) + statuses.count(503) == 120 - evaluated
    assert statuses.count(429) >= 100
    for answer in answers:
        if answer.status_code in (429, 503):
            assert int(answer.headers["Retry-After"]) >= 1
        if answer.status_code == 429:
            assert answer.json() == {
                "error": "too many sign-in attempts; retry later",
                "code": "SIGN_IN_THROTTLED",
            }


def test_a_throttled_attempt_is_answered_after_its_retry_after_capped(common_settings):
    """A client that ignores Retry-After gets each refusal a second late: one connection
    cannot send hundreds of refused attempts a second at the gateway."""
    with auth_server(
        common_settings, signin_free_failures=1, signin_account_free_failures=1
    ) as address:
        for cap, slowest in ((1.0, None), (0.0, 0.5)):
            with gateway_for(common_settings, address, throttled_answer_delay_seconds=cap) as api:
                email = unique_email()
                register(api, email)
                api.post("/api/auth/signin", json=sign_in_body(email, "wrong password"))
                started = time.monotonic()
                answer = api.post("/api/auth/signin", json=sign_in_body(email, "wrong"))
                took = time.monotonic() - started
                assert answer.status_code == 429
                if slowest is None:
                    assert took >= 0.5, took  # held back: min(Retry-After left, the cap)
                else:
                    assert took < slowest, took


def test_a_busy_refusal_is_answered_after_its_retry_after_capped(common_settings):
    """Auth refuses a sign-in at once when password hashing is full; the gateway holds
    that 503 back for its Retry-After (capped), as it does a 429."""
    with (
        auth_server(
            common_settings, bcrypt_rounds=14, bcrypt_threads=1, bcrypt_max_pending=1
        ) as address,
        gateway_for(common_settings, address, throttled_answer_delay_seconds=1.0) as api,
        stub_of(address) as stub,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        slow = pool.submit(guess_over_grpc, stub, unique_email())
        time.sleep(0.3)  # it holds the only place (~1 s of hashing at cost 14)
        started = time.monotonic()
        busy = api.post("/api/auth/signin", json=sign_in_body(unique_email(), PASSWORD))
        took = time.monotonic() - started
        assert slow.result() == grpc.StatusCode.UNAUTHENTICATED
    assert busy.status_code == 503
    assert int(busy.headers["Retry-After"]) >= 1
    assert took >= 0.5, took


def test_delays_double_and_an_attacker_honouring_them_gets_few_checks(common_settings):
    """Scaled down (a 0.25 s first delay instead of 1 s): a guesser that waits exactly as
    long as told, over 20 first delays, gets at most 10 checks, and the delays grow."""
    base = 0.25
    with (
        auth_server(common_settings, signin_base_delay_seconds=base) as address,
        stub_of(address) as stub,
    ):
        email = unique_email()
        stub.SignUp(auth_pb2.SignUpRequest(email=email, name="Ada", password=PASSWORD))
        before = checks_run()
        delays: list[float] = []
        deadline = time.monotonic() + 20 * base
        while time.monotonic() < deadline:
            try:
                stub.SignIn(auth_pb2.SignInRequest(email=email, password="wrong password"))
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    delay = rpc_error_details(exc).retry_after
                    assert delay is not None and delay > 0
                    delays.append(delay)
                    time.sleep(delay)
                else:
                    assert exc.code() is grpc.StatusCode.UNAUTHENTICATED
        evaluated = checks_run() - before
    assert 5 <= evaluated <= 10
    # A refusal right after a check is told the delay that check started, less the
    # check's own time: each longer than the last, the last several times the first.
    waits = [d for d in delays if d > base / 4]
    assert len(waits) >= 2, delays
    assert waits == sorted(waits), delays
    assert waits[-1] > 2 * base, delays


def test_guesses_from_many_addresses_are_capped_by_the_account_ceiling(common_settings):
    """Behind a load balancer (TRUSTED_PROXY_HOPS=1), each guess from an address of its
    own: the per-address counters are all fresh, the account's is not."""
    with (
        auth_server(common_settings) as address,
        gateway_for(common_settings, address, trusted_proxy_hops=1) as api,
    ):
        email = unique_email()
        register(api, email)
        before = checks_run()
        statuses = [
            api.post(
                "/api/auth/signin",
                json=sign_in_body(email, "wrong password"),
                headers={"X-Forwarded-For": random_address()},
            ).status_code
            for _ in range(60)
        ]
        evaluated = checks_run() - before
    assert evaluated <= 10
    assert statuses.count(429) == 60 - evaluated


@pytest.mark.parametrize("hops,believed", [(0, False), (1, True)])
def test_x_forwarded_for_is_believed_only_through_trusted_hops(common_settings, hops, believed):
    """With no account-wide ceiling to speak of, only the per-address counter can stop
    guesses that each name another address in X-Forwarded-For: with 0 trusted hops the
    header is ignored (every guess is 127.0.0.1's), with 1 its last entry is the client."""
    with (
        auth_server(common_settings, signin_account_free_failures=10_000) as address,
        gateway_for(common_settings, address, trusted_proxy_hops=hops) as api,
    ):
        email = unique_email()
        register(api, email)
        before = checks_run()
        statuses = [
            api.post(
                "/api/auth/signin",
                json=sign_in_body(email, "wrong password"),
                headers={"X-Forwarded-For": f"10.9.8.7, {random_address()}"},
            ).status_code
            for _ in range(12)
        ]
        evaluated = checks_run() - before
    if believed:
        assert evaluated == 12 and set(statuses) == {401}
    else:
        assert evaluated == 5
        assert statuses == [401] * 5 + [429] * 7


def test_a_direct_grpc_caller_cannot_choose_its_address(common_settings, service_token):
    """The address metadata counts only with the service credential: a caller without it
    (or with a wrong one) is counted by its connection's address whatever it claims."""
    with (
        auth_server(
            common_settings, signin_account_free_failures=10_000, signin_free_failures=3
        ) as address,
        stub_of(address) as stub,
    ):
        email = unique_email()
        stub.SignUp(auth_pb2.SignUpRequest(email=email, name="Ada", password=PASSWORD))
        spoofed = [
            guess_over_grpc(stub, email, [(CLIENT_ADDRESS, random_address())]) for _ in range(3)
        ]
        spoofed += [
            guess_over_grpc(
                stub, email, [(CLIENT_ADDRESS, random_address()), (SERVICE_TOKEN, "y" * 43)]
            )
            for _ in range(3)
        ]
        assert (
            spoofed
            == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
        )
        # The gateway's way (with the credential) is believed: each address counts apart.
        from_gateway = [
            guess_over_grpc(
                stub, email, [(CLIENT_ADDRESS, random_address()), (SERVICE_TOKEN, service_token)]
            )
            for _ in range(4)
        ]
        assert from_gateway == [grpc.StatusCode.UNAUTHENTICATED] * 4


def test_the_owner_with_a_device_session_signs_in_during_an_attack(common_settings):
    with (
        auth_server(common_settings) as address,
        gateway_for(common_settings, address, trusted_proxy_hops=1) as api,
    ):
        email = unique_email()
        owner_address = random_address()
        owner = httpx.Client(
            base_url=str(api.base_url), timeout=60, headers={"X-Forwarded-For": owner_address}
        )
        with owner:
            assert sign_up_over_http(owner, email).status_code == 200
            assert owner.cookies.get("device_id")
            # Strangers guess from many addresses and from the owner's own.
            for index in range(40):
                guesser = owner_address if index % 2 else random_address()
                api.post(
                    "/api/auth/signin",
                    json=sign_in_body(email, "wrong password"),
                    headers={"X-Forwarded-For": guesser},
                )
            locked = api.post(
                "/api/auth/signin",
                json=sign_in_body(email, PASSWORD),
                headers={"X-Forwarded-For": owner_address},
            )
            assert locked.status_code == 429, "the attack did not lock the account"
            # A forged device proof (a real device id, a made-up refresh token) is no key.
            with httpx.Client(base_url=str(api.base_url), timeout=60) as forger:
                forger.cookies.set("device_id", owner.cookies["device_id"])
                forger.cookies.set("refresh_token", "made-up")
                forged = forger.post(
                    "/api/auth/signin",
                    json=sign_in_body(email, PASSWORD),
                    headers={"X-Forwarded-For": owner_address},
                )
            assert forged.status_code == 429
            # The owner's browser, with its session cookies, is not locked out.
            signed_in = owner.post("/api/auth/signin", json=sign_in_body(email, PASSWORD))
            assert signed_in.status_code == 200, signed_in.text
            assert owner.get("/api/auth/authenticate").status_code == 200
            # Its own mistakes still count, on that device alone.
            mistakes = [
                owner.post(
                    "/api/auth/signin", json=sign_in_body(email, "wrong password")
                ).status_code
                for _ in range(7)
            ]
            assert mistakes[:5] == [401] * 5 and mistakes[-1] == 429


def test_sign_ups_are_limited_per_address(common_settings):
    with (
        auth_server(common_settings, signup_per_address=3) as address,
        gateway_for(common_settings, address, trusted_proxy_hops=1) as api,
    ):
        client_address = random_address()
        answers = [
            sign_up_over_http(api, unique_email(), headers={"X-Forwarded-For": client_address})
            for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert int(answers[-1].headers["Retry-After"]) > 3000  # the hour's window
        assert answers[-1].json() == {
            "error": "too many sign-ups from this address; retry later",
            "code": "SIGN_UP_THROTTLED",
        }
        # Another address is not affected.
        other = sign_up_over_http(
            api, unique_email(), headers={"X-Forwarded-For": random_address()}
        )
        assert other.status_code == 200


# --- Redis down ---------------------------------------------------------------------------


def test_sign_in_is_503_with_retry_after_while_redis_is_down(common_settings, redis_url):
    """Fail closed: without the shared counters no attempt is checked (refused 503, not
    500), and sign-in works again as soon as Redis is back."""
    target = urlparse(redis_url)
    proxy = TcpProxy(target.hostname, target.port).start()
    try:
        proxied = f"redis://127.0.0.1:{proxy.port}{target.path}"
        with (
            auth_server(common_settings, cloud_rd_uri=proxied) as address,
            gateway_for(common_settings, address) as api,
        ):
            email = unique_email()
            register(api, email)
            proxy.cut()
            before = checks_run()
            down = api.post("/api/auth/signin", json=sign_in_body(email, PASSWORD))
            assert down.status_code == 503
            assert int(down.headers["Retry-After"]) >= 1
            assert down.json() == {
                "error": "sign-in is temporarily unavailable; retry shortly",
                "code": "THROTTLE_UNAVAILABLE",
            }
            assert sign_up_over_http(api, unique_email()).status_code == 503
            assert checks_run() == before
            proxy.restore()
            assert (
                api.post("/api/auth/signin", json=sign_in_body(email, PASSWORD)).status_code == 200
            )
    finally:
        proxy.close()


# --- The hashing queue --------------------------------------------------------------------


def test_a_full_hashing_queue_answers_503_with_retry_after_at_once(common_settings):
    """One hashing thread and two places: while two slow sign-ins hold them, a third is
    refused at once, through the gateway and over gRPC."""
    with (
        auth_server(
            common_settings, bcrypt_rounds=14, bcrypt_threads=1, bcrypt_max_pending=2
        ) as address,
        gateway_for(common_settings, address) as api,
        stub_of(address) as stub,
    ):
        refused_before = REGISTRY.get_sample_value("dropfile_auth_hashing_queue_full_total") or 0.0
        with ThreadPoolExecutor(max_workers=2) as pool:
            slow = [pool.submit(guess_over_grpc, stub, unique_email()) for _ in range(2)]
            time.sleep(0.3)  # both admitted: one hashing (~1 s at cost 14), one waiting
            started = time.monotonic()
            busy = api.post("/api/auth/signin", json=sign_in_body(unique_email(), PASSWORD))
            took = time.monotonic() - started
            with pytest.raises(grpc.RpcError) as over_grpc:
                stub.SignUp(
                    auth_pb2.SignUpRequest(email=unique_email(), name="Ada", password=PASSWORD)
                )
            assert [f.result() for f in slow] == [grpc.StatusCode.UNAUTHENTICATED] * 2
        assert busy.status_code == 503
        assert int(busy.headers["Retry-After"]) >= 1
        assert took < 0.5, f"the refusal took {took:.2f} s"
        assert over_grpc.value.code() is grpc.StatusCode.UNAVAILABLE
        assert rpc_error_details(over_grpc.value).retry_after is not None
        assert (
            REGISTRY.get_sample_value("dropfile_auth_hashing_queue_full_total") - refused_before
        ) == 2


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[None]:
    """A Dropfile process as deployed (`python -m ...`), until the block ends."""
    child = ChildProcess(argv[-1], argv, cwd=log.parent, env={**os.environ, **env}, log=log)
    child.start()
    try:
        child.wait_ready(lambda: http_ok(ready_url), timeout=30)
        yield
    finally:
        child.stop(timeout=20)


def test_a_sign_in_flood_does_not_slow_refresh_or_authenticate(common_settings, tmp_path):
    """48 connections sign in back to back (bench/loadgen.py, a process of its own), each
    time at an account of its own (no attempt limit applies: every one is a bcrypt check
    or a refusal of a full queue), through a gateway and an auth server that run as
    deployed, at the product's bcrypt cost; meanwhile one user refreshes and authenticates
    through the same gateway. On main they waited ~2 s for a free RPC thread of auth; the
    issue asks for p99 < 100 ms, which `make bench` measures; asserted loosely here."""
    from bench.api import http_workload, raw_post, run_load

    auth_port, http_port = free_port(), free_port()
    common = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
        "DROPFILE_ENV": "development",
        "LOG_LEVEL": "INFO",
        "DROPFILE_KEYS_DIR": str(tmp_path / "keys"),
        "SERVICE_TOKEN": common_settings["service_token"],
    }
    auth_env = {
        **common,
        "AUTH_GRPC_PORT": str(auth_port),
        "METRICS_PORT": str(free_port()),
        "CLOUD_DB_URI": common_settings["cloud_db_uri"],
        "CLOUD_RD_URI": common_settings["cloud_rd_uri"],
        "PRIVATE_KEY": common_settings["private_key"],
        "PUBLIC_KEY": common_settings["public_key"],
        # This run's other tests sign up from 127.0.0.1 too.
        "SIGNUP_PER_ADDRESS": "1000000",
    }
    gateway = f"http://127.0.0.1:{http_port}"
    gateway_env = {
        **common,
        "DROPFILE_HTTP_PORT": str(http_port),
        "AUTH_SERVICE_ADDR": f"127.0.0.1:{auth_port}",
        "UPLOAD_SERVICE_ADDR": "127.0.0.1:9",
        "EVENTS_SERVICE_ADDR": "127.0.0.1:9",
    }
    with (
        process(
            [sys.executable, "-m", "services.auth.server"],
            auth_env,
            tmp_path / "auth.log",
            f"http://127.0.0.1:{auth_env['METRICS_PORT']}/metrics",
        ),
        process(
            [sys.executable, "-m", "gateway"],
            gateway_env,
            tmp_path / "gateway.log",
            f"{gateway}/healthz",
        ),
        httpx.Client(base_url=gateway, timeout=60) as user,
    ):
        assert sign_up_over_http(user, unique_email()).status_code == 200
        flood_requests = [
            raw_post(
                gateway,
                "/api/auth/signin",
                sign_in_body(f"flood-{i}-{uuid.uuid4().hex[:8]}@example.com", "not the password"),
            )
            for i in range(5000)
        ]
        outcome: dict = {}
        flood = threading.Thread(
            target=lambda: outcome.update(
                run_load(
                    [
                        http_workload(
                            "flood",
                            gateway,
                            flood_requests,
                            concurrency=48,
                            duration=4.0,
                            warmup=1.0,
                        )
                    ],
                    timeout=120,
                )
            )
        )
        flood.start()
        time.sleep(1.5)  # the flood is on and the hashing queue full
        refresh, authenticate = [], []
        while flood.is_alive() and len(refresh) < 200:
            started = time.perf_counter()
            assert user.get("/api/auth/refresh").status_code == 200
            refreshed = time.perf_counter()
            assert user.get("/api/auth/authenticate").status_code == 200
            refresh.append(refreshed - started)
            authenticate.append(time.perf_counter() - refreshed)
            time.sleep(0.02)
        flood.join()
    statuses = outcome["flood"]["statuses"]
    assert len(refresh) >= 10
    worst = {"refresh": max(refresh), "authenticate": max(authenticate)}
    print(
        f"flood {statuses}: worst {worst}, medians "
        f"{statistics.median(refresh):.3f} / {statistics.median(authenticate):.3f} s "
        f"over {len(refresh)}"
    )
    # The slowest of ~100 samples (their p99), loosely: 0.05-0.5 s on this 2-core machine
    # under other load; main: seconds each.
    assert worst["refresh"] < 1.0 and worst["authenticate"] < 1.0, worst
    assert statuses.get("401", 0) >= 5, statuses  # passwords were checked
    assert statuses.get("503", 0) > 0, statuses  # and the queue overflowed


# --- Pieces -------------------------------------------------------------------------------


def test_ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4():
    from services.auth.throttle import address_key

    assert (
        address_key("2001:db8:1:2:aaaa::1")
        == address_key("2001:db8:1:2:bbbb::7")
        == "2001:db8:1:2::/64"
    )
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:198.18.0.7") == "198.18.0.7"
    assert address_key("198.18.0.7") == "198.18.0.7"


def test_sign_ins_may_not_hold_more_than_half_of_the_rpc_threads(common_settings):
    with pytest.raises(ValueError, match="BCRYPT_MAX_PENDING"):
        settings_for(AuthSettings, common_settings, grpc_max_workers=8, bcrypt_max_pending=5)
    assert (
        settings_for(
            AuthSettings, common_settings, grpc_max_workers=8, bcrypt_max_pending=4
        ).bcrypt_max_pending
        == 4
    )


@pytest.mark.parametrize(
    "peer,address",
    [
        ("ipv4:127.0.0.1:50312", "127.0.0.1"),
        ("ipv6:[::1]:50312", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("unix:/tmp/auth.sock", "unix:/tmp/auth.sock"),
    ],
)
def test_the_grpc_peer_address_is_read_from_its_peer_string(peer, address):
    from services.auth.client_address import peer_address

    assert peer_address(peer) == address
