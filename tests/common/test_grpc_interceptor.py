"""The interceptor every service shares wraps each method's handler once, not on every
call (gRPC asks it for the handler per call). That it still checks every call's token:
tests/upload/test_ownership_and_auth.py."""

from __future__ import annotations

import grpc

from services.common.grpc_server import AccessPolicy, ServiceInterceptor
from services.common.revocations import RevokedSessions, revocation_client
from services.common.tokens import TokenVerifier


class Details:
    """What gRPC hands an interceptor: the called method's full name."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _interceptor(key_pair) -> ServiceInterceptor:
    # Never asked: no call is made (the revocation client connects on first use).
    revocations = RevokedSessions(revocation_client("redis://127.0.0.1:9/0"))
    verifier = TokenVerifier(
        key_pair[1], issuer="dropfile-auth", audience="dropfile", revocations=revocations
    )
    return ServiceInterceptor(verifier=verifier, service_token="s" * 32, policy=AccessPolicy())


def test_each_method_is_wrapped_once_and_unknown_methods_are_not_kept(key_pair):
    interceptor = _interceptor(key_pair)
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    looked_up: list[str] = []

    def continuation(details):
        looked_up.append(details.method)
        return handler if details.method == "/pkg.Service/Known" else None

    first = interceptor.intercept_service(continuation, Details("/pkg.Service/Known"))
    again = interceptor.intercept_service(continuation, Details("/pkg.Service/Known"))
    assert first is again
    assert first.unary_unary is not handler.unary_unary  # wrapped: auth, errors, metrics
    for _ in range(3):
        assert interceptor.intercept_service(continuation, Details("/pkg.Service/Nope")) is None
    assert looked_up == ["/pkg.Service/Known"] + ["/pkg.Service/Nope"] * 3
