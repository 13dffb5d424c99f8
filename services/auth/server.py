"""The auth service process: `python -m services.auth.server`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from dropfile.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common import keys
from services.common.clients import redis_client
from services.common.db import Database, make_engine
from services.common.grpc_server import AccessPolicy, ServerHandle, build_server, run_service
from services.common.readiness import ReadinessWatch, postgresql, redis
from services.common.tokens import verifier_for

from .accounts import Accounts
from .client_address import ClientAddresses
from .guard import SignInGuard
from .oidc.flows import FlowStore
from .oidc.sign_in import OidcSignIn
from .passwords import PasswordHasher
from .servicer import AuthServicer
from .settings import AuthSettings
from .store import AccountStore
from .throttle import AttemptThrottle, ThrottlePolicy
from .tokens import AccessTokenIssuer

if TYPE_CHECKING:
    from .oidc.provider import OidcProvider

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
PUBLIC_METHODS = {
    f"/{SERVICE_NAME}/{m}"
    for m in (
        "SignUp",
        "SignIn",
        "Refresh",
        "SignOut",
        "GetSignInOptions",
        "StartOidcSignIn",
        "FinishOidcSignIn",
    )
}


def oidc_provider(settings: AuthSettings) -> OidcProvider | None:
    """The configured OpenID Connect issuer; its libraries (httpx, Authlib, joserfc) are
    loaded only when there is one."""
    if not (settings.oidc_issuer_url and settings.oidc_client_id):
        return None
    from .oidc.provider import OidcProvider

    secret = settings.oidc_client_secret
    return OidcProvider(
        issuer_url=settings.oidc_issuer_url,
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        scopes=settings.oidc_scopes,
        metadata_ttl_seconds=settings.oidc_metadata_ttl_seconds,
        http_timeout_seconds=settings.oidc_http_timeout_seconds,
    )


def create_server(settings: AuthSettings, *, port: int | None = None) -> ServerHandle:
    store = AccountStore(
        Database(make_engine(settings.cloud_db_uri, pool_size=settings.grpc_max_workers // 2 or 1))
    )
    public_pem = keys.public_key_pem(settings, settings.public_key)
    verifier = verifier_for(settings, public_pem)
    service_token = keys.service_token(settings, settings.service_token)
    hasher = PasswordHasher(
        settings.bcrypt_rounds,
        threads=settings.bcrypt_threads,
        niceness=settings.bcrypt_niceness,
        max_pending=settings.bcrypt_max_pending,
    )
    accounts = Accounts(
        store=store,
        hasher=hasher,
        issuer=AccessTokenIssuer(
            keys.private_key_pem(settings, settings.private_key),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.access_token_ttl_seconds,
        ),
        long_session_ttl=settings.long_session_ttl_seconds,
        short_session_ttl=settings.short_session_ttl_seconds,
        revocations=verifier.revocations,
        refresh_grace_seconds=settings.refresh_reuse_grace_seconds,
    )

    throttle = AttemptThrottle(
        redis_client(settings.cloud_rd_uri),
        ThrottlePolicy(
            free_failures=settings.signin_free_failures,
            account_free_failures=settings.signin_account_free_failures,
            base_delay_seconds=settings.signin_base_delay_seconds,
            max_delay_seconds=settings.signin_max_delay_seconds,
            failure_window_seconds=settings.signin_failure_window_seconds,
            signup_per_address=settings.signup_per_address,
            signup_window_seconds=settings.signup_window_seconds,
            oidc_starts_per_address=settings.oidc_starts_per_address,
            oidc_start_window_seconds=settings.oidc_flow_ttl_seconds,
        ),
    )
    guard = SignInGuard(accounts=accounts, hasher=hasher, store=store, throttle=throttle)
    oidc = OidcSignIn(
        provider=oidc_provider(settings),
        provider_name=settings.oidc_provider_name,
        flows=FlowStore(redis_client(settings.cloud_rd_uri), settings.oidc_flow_ttl_seconds),
        accounts=accounts,
        throttle=throttle,
    )

    def register(server: grpc.Server) -> list[str]:
        auth_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(accounts, guard, ClientAddresses(service_token), oidc), server
        )
        return [SERVICE_NAME]

    handle = build_server(
        host=settings.dropfile_bind_host,
        port=settings.auth_grpc_port if port is None else port,
        max_workers=settings.grpc_max_workers,
        verifier=verifier,
        service_token=service_token,
        policy=AccessPolicy(public_methods=PUBLIC_METHODS),
        register=register,
    )
    # Not ready while PostgreSQL (every account and session) or Redis (sign-in and
    # sign-up throttling and sign-outs, which fail closed) is unreachable.
    handle.readiness = ReadinessWatch(
        handle.health,
        handle.service_names,
        [
            postgresql(settings.cloud_db_uri),
            redis(redis_client(settings.cloud_rd_uri, timeout_seconds=1.0, retries=0)),
        ],
        interval=settings.readiness_check_interval_seconds,
    )
    return handle


def main() -> None:
    run_service("auth", AuthSettings, create_server)


if __name__ == "__main__":
    main()
