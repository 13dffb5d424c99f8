"""Signing in at the configured OpenID Connect issuer: authorization code with PKCE.

`start` makes the flow's secrets (state, nonce, PKCE verifier and the browser's flow
secret), keeps them in Redis and answers the issuer's authorization URL. `finish` takes the
flow back (once), exchanges the code, verifies the ID token, and hands the verified identity
to Accounts, which signs in by (issuer, subject), or links or creates an account by the
verified email. Every refusal is a DomainError worded for the person at the browser."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.errors import InvalidArgument, NotFound, PermissionDenied

from ..accounts import EMAIL_PATTERN, Accounts, FederatedSignIn, normalize_email
from ..throttle import AttemptThrottle
from .flows import Flow, FlowStore

if TYPE_CHECKING:  # httpx, Authlib and joserfc load only where single sign-on is configured
    from .provider import OidcProvider

_REDIRECT_URI = re.compile(r"^https?://[^\s#]{1,2000}$")
# What of the issuer's error is shown: printable, short.
_SHOWN = re.compile(r"[^ -~]")


@dataclass(frozen=True)
class StartedFlow:
    authorization_url: str
    flow_secret: str
    expires_in_seconds: int


def _shown(text: str, limit: int) -> str:
    return _SHOWN.sub("", text)[:limit]


class OidcSignIn:
    def __init__(
        self,
        *,
        provider: OidcProvider | None,
        provider_name: str,
        flows: FlowStore,
        accounts: Accounts,
        throttle: AttemptThrottle,
    ) -> None:
        self._provider = provider
        self.provider_name = provider_name
        self._flows = flows
        self._accounts = accounts
        self._throttle = throttle

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    def _configured(self) -> OidcProvider:
        if self._provider is None:
            raise NotFound("single sign-on is not configured", reason="OIDC_NOT_CONFIGURED")
        return self._provider

    def start(self, *, redirect_uri: str, remember_me: bool, client_address: str) -> StartedFlow:
        provider = self._configured()
        if not _REDIRECT_URI.match(redirect_uri):
            raise InvalidArgument("redirect_uri must be an absolute http(s) URL")
        self._throttle.admit_oidc_start(address=client_address)
        state = secrets.token_urlsafe(32)
        flow_secret = secrets.token_urlsafe(32)
        flow = Flow(
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),  # 64 characters (RFC 7636: 43-128)
            redirect_uri=redirect_uri,
            remember_me=remember_me,
        )
        # Discovery first: an unreachable issuer leaves nothing behind in Redis.
        url = provider.authorization_url(
            redirect_uri=redirect_uri,
            state=state,
            nonce=flow.nonce,
            code_verifier=flow.code_verifier,
        )
        self._flows.save(state=state, flow_secret=flow_secret, flow=flow)
        return StartedFlow(url, flow_secret, self._flows.ttl_seconds)

    def finish(
        self, *, state: str, code: str, flow_secret: str, error: str, error_description: str
    ) -> FederatedSignIn:
        provider = self._configured()
        flow = self._flows.take(state=state, flow_secret=flow_secret)
        if flow is None:
            raise InvalidArgument(
                "this sign-in has expired or was already used, or was started in another "
                "browser; start again",
                reason="OIDC_FLOW_UNKNOWN",
            )
        if error:
            detail = _shown(error_description, 200)
            raise InvalidArgument(
                f"{self.provider_name} did not sign you in ({_shown(error, 64)}"
                + (f": {detail})" if detail else ")"),
                reason="OIDC_PROVIDER_ERROR",
            )
        if not code:
            raise InvalidArgument("the sign-in came back without a code; start again")
        identity = provider.identity(
            code=code,
            redirect_uri=flow.redirect_uri,
            code_verifier=flow.code_verifier,
            nonce=flow.nonce,
        )
        if identity.email is None or not identity.email_verified:
            raise PermissionDenied(
                f"{self.provider_name} has not verified your email address"
                + (f" ({_shown(identity.email, 320)})" if identity.email else "")
                + ": verify it there, then sign in again",
                reason="OIDC_EMAIL_NOT_VERIFIED",
            )
        email = normalize_email(identity.email)
        if len(email) > 320 or not EMAIL_PATTERN.match(email):
            raise PermissionDenied(
                f"the email address {self.provider_name} gave is not usable",
                reason="OIDC_EMAIL_UNUSABLE",
            )
        name = (identity.name or email.split("@", 1)[0]).strip()[:200] or email
        if len(identity.issuer) > 512 or len(identity.subject) > 255:
            raise PermissionDenied(
                f"the identity {self.provider_name} gave is not usable",
                reason="OIDC_IDENTITY_UNUSABLE",
            )
        return self._accounts.sign_in_with_identity(
            issuer=identity.issuer,
            subject=identity.subject,
            email=email,
            name=name,
            remember_me=flow.remember_me,
        )
