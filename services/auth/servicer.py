"""AuthService over gRPC: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import grpc

from dropfile.auth.v1 import auth_pb2, auth_pb2_grpc
from services.common.errors import Unauthenticated
from services.common.tokens import current_identity

from .accounts import Accounts, SessionTokens
from .client_address import ClientAddresses
from .guard import DeviceProof, SignInGuard
from .oidc.sign_in import OidcSignIn


def _tokens(tokens: SessionTokens) -> auth_pb2.SessionTokens:
    return auth_pb2.SessionTokens(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        device_id=tokens.device_id,
        access_token_expires_in_seconds=tokens.access_token_expires_in,
        session_expires_in_seconds=tokens.session_expires_in,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        accounts: Accounts,
        guard: SignInGuard,
        client_addresses: ClientAddresses,
        oidc: OidcSignIn,
    ) -> None:
        self._accounts = accounts
        self._guard = guard
        self._client_addresses = client_addresses
        self._oidc = oidc

    def SignUp(
        self, request: auth_pb2.SignUpRequest, context: grpc.ServicerContext
    ) -> auth_pb2.SignUpResponse:
        user_id, tokens = self._guard.sign_up(
            email=request.email,
            name=request.name,
            password=request.password,
            remember_me=request.remember_me,
            client_address=self._client_addresses.of(context),
        )
        return auth_pb2.SignUpResponse(user_id=user_id, tokens=_tokens(tokens))

    def SignIn(
        self, request: auth_pb2.SignInRequest, context: grpc.ServicerContext
    ) -> auth_pb2.SignInResponse:
        user_id, tokens = self._guard.sign_in(
            email=request.email,
            password=request.password,
            remember_me=request.remember_me,
            client_address=self._client_addresses.of(context),
            device=DeviceProof(request.device_id, request.refresh_token)
            if request.device_id and request.refresh_token
            else None,
        )
        return auth_pb2.SignInResponse(user_id=user_id, tokens=_tokens(tokens))

    def Refresh(
        self, request: auth_pb2.RefreshRequest, context: grpc.ServicerContext
    ) -> auth_pb2.RefreshResponse:
        tokens = self._accounts.refresh(
            refresh_token=request.refresh_token, device_id=request.device_id
        )
        return auth_pb2.RefreshResponse(tokens=_tokens(tokens))

    def SignOut(
        self, request: auth_pb2.SignOutRequest, context: grpc.ServicerContext
    ) -> auth_pb2.SignOutResponse:
        self._accounts.sign_out(device_id=request.device_id)
        return auth_pb2.SignOutResponse()

    def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: grpc.ServicerContext
    ) -> auth_pb2.AuthenticateResponse:
        identity = current_identity.get()
        if identity is None:  # the interceptor guarantees one; defensive
            raise Unauthenticated("missing access token")
        return auth_pb2.AuthenticateResponse(user_id=identity.user_id, email=identity.email)

    def GetSignInOptions(
        self, request: auth_pb2.GetSignInOptionsRequest, context: grpc.ServicerContext
    ) -> auth_pb2.GetSignInOptionsResponse:
        return auth_pb2.GetSignInOptionsResponse(
            oidc_enabled=self._oidc.enabled,
            oidc_display_name=self._oidc.provider_name if self._oidc.enabled else "",
        )

    def StartOidcSignIn(
        self, request: auth_pb2.StartOidcSignInRequest, context: grpc.ServicerContext
    ) -> auth_pb2.StartOidcSignInResponse:
        started = self._oidc.start(
            redirect_uri=request.redirect_uri,
            remember_me=request.remember_me,
            client_address=self._client_addresses.of(context),
        )
        return auth_pb2.StartOidcSignInResponse(
            authorization_url=started.authorization_url,
            flow_secret=started.flow_secret,
            expires_in_seconds=started.expires_in_seconds,
        )

    def FinishOidcSignIn(
        self, request: auth_pb2.FinishOidcSignInRequest, context: grpc.ServicerContext
    ) -> auth_pb2.FinishOidcSignInResponse:
        signed_in = self._oidc.finish(
            state=request.state,
            code=request.code,
            flow_secret=request.flow_secret,
            error=request.error,
            error_description=request.error_description,
        )
        return auth_pb2.FinishOidcSignInResponse(
            user_id=signed_in.user_id,
            tokens=_tokens(signed_in.tokens),
            created=signed_in.created,
            linked=signed_in.linked,
        )
