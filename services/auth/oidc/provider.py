"""The OpenID Connect issuer as a relying party sees it: its discovery document and keys
(cached), the authorization URL of a code flow with PKCE, the code exchange, and the
verification of the ID token it returns.

Protocol pieces come from Authlib (PKCE challenge, authorization URL, token request and
client authentication, the ID token's claim rules) and joserfc (JWS and keys); HTTP is
httpx. Nothing here knows about Dropfile's accounts: `identity()` returns the verified
claims, and the caller decides what they open."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from services.common.errors import Unauthenticated, Unavailable

log = logging.getLogger(__name__)

# Asymmetric algorithms only: never `none`, never HS256 keyed with the client secret.
ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
# An ID token's exp, iat (and auth_time) may be this far off the issuer's clock.
CLOCK_LEEWAY_SECONDS = 60
# An unknown key id (the issuer rotated its keys) fetches the JWKS again, unless it was
# fetched less than this long ago (forged key ids cannot make auth hammer the issuer).
JWKS_REFETCH_SECONDS = 1.0
# When the issuer cannot be reached, a document or key set fetched before serves this long.
STALE_FALLBACK_SECONDS = 24 * 3600
ISSUER_RETRY_AFTER_SECONDS = 5.0
# Bodies larger than this from the issuer are refused (discovery, keys, tokens, userinfo).
MAX_RESPONSE_BYTES = 1024 * 1024

T = TypeVar("T")


class IssuerUnreachable(Exception):
    """The issuer did not answer, or answered something that is not what the protocol says."""


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    # client_secret_basic, client_secret_post or none.
    token_auth_method: str
    algorithms: tuple[str, ...]


@dataclass(frozen=True)
class IdentityClaims:
    """What a verified ID token (and, for what it lacks, the userinfo endpoint) says."""

    issuer: str
    subject: str
    email: str | None
    # True only when the issuer said exactly `"email_verified": true`.
    email_verified: bool
    name: str | None


@dataclass
class _Cached(Generic[T]):
    value: T
    fetched_at: float


class _Cache(Generic[T]):
    """One value fetched from the issuer, kept for `ttl` seconds; one fetch at a time.
    When a fetch fails, a value fetched within STALE_FALLBACK_SECONDS is used instead."""

    def __init__(self, what: str, fetch: Callable[[], T], ttl: float) -> None:
        self._what = what
        self._fetch = fetch
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: _Cached[T] | None = None

    def get(self, *, refresh_if_older_than: float | None = None) -> T:
        max_age = self._ttl if refresh_if_older_than is None else refresh_if_older_than
        cached = self._cached
        if cached is not None and time.monotonic() - cached.fetched_at < max_age:
            return cached.value
        with self._lock:
            cached = self._cached  # another thread may have fetched it meanwhile
            if cached is not None and time.monotonic() - cached.fetched_at < max_age:
                return cached.value
            try:
                value = self._fetch()
            except IssuerUnreachable as exc:
                if cached is not None and time.monotonic() - cached.fetched_at < (
                    STALE_FALLBACK_SECONDS
                ):
                    log.warning("%s: %s; using the copy fetched before", self._what, exc)
                    return cached.value
                log.warning("%s: %s", self._what, exc)
                raise Unavailable(
                    "the single sign-on provider cannot be reached; retry later",
                    reason="OIDC_PROVIDER_UNAVAILABLE",
                    retry_after=ISSUER_RETRY_AFTER_SECONDS,
                ) from None
            self._cached = _Cached(value, time.monotonic())
            return value


def _string(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise IssuerUnreachable(f"the discovery document has no {name}")
    return value


def _token_auth_method(document: Mapping[str, Any], has_secret: bool) -> str:
    if not has_secret:
        return "none"
    supported = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" in supported or "client_secret_post" not in supported:
        return "client_secret_basic"
    return "client_secret_post"


def parse_metadata(document: Any, *, issuer: str, has_secret: bool) -> ProviderMetadata:
    """The parts of a discovery document a code flow needs, checked against the issuer
    it was fetched for (OpenID Connect Discovery 1.0, section 4.3)."""
    if not isinstance(document, dict):
        raise IssuerUnreachable("the discovery document is not a JSON object")
    stated = _string(document, "issuer")
    if stated.rstrip("/") != issuer.rstrip("/"):
        raise IssuerUnreachable(f"the discovery document names another issuer ({stated!r})")
    challenge_methods = document.get("code_challenge_methods_supported")
    if isinstance(challenge_methods, list) and "S256" not in challenge_methods:
        raise IssuerUnreachable("the issuer does not support PKCE with S256")
    offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in ALLOWED_ALGORITHMS if a in offered)
    if not algorithms:
        raise IssuerUnreachable("the issuer signs ID tokens with no asymmetric algorithm")
    userinfo = document.get("userinfo_endpoint")
    return ProviderMetadata(
        issuer=stated,
        authorization_endpoint=_string(document, "authorization_endpoint"),
        token_endpoint=_string(document, "token_endpoint"),
        jwks_uri=_string(document, "jwks_uri"),
        userinfo_endpoint=userinfo if isinstance(userinfo, str) and userinfo else None,
        token_auth_method=_token_auth_method(document, has_secret),
        algorithms=algorithms,
    )


def _refused(check: str) -> Unauthenticated:
    return Unauthenticated(
        f"the identity token from the single sign-on provider failed verification ({check}); "
        "sign in again",
        reason="OIDC_ID_TOKEN_INVALID",
    )


class OidcProvider:
    def __init__(
        self,
        *,
        issuer_url: str,
        client_id: str,
        client_secret: str | None,
        scopes: str,
        metadata_ttl_seconds: float,
        http_timeout_seconds: float,
    ) -> None:
        self.issuer_url = issuer_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scopes = scopes
        self._http = httpx.Client(
            timeout=http_timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": "dropfile-auth", "Accept": "application/json"},
        )
        self._metadata = _Cache(
            "the issuer's discovery document", self._fetch_metadata, metadata_ttl_seconds
        )
        self._keys = _Cache("the issuer's keys (JWKS)", self._fetch_keys, metadata_ttl_seconds)

    def close(self) -> None:
        self._http.close()

    # -- HTTP ---------------------------------------------------------------------------

    def _json(self, response: httpx.Response, what: str) -> Any:
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise IssuerUnreachable(f"{what} is larger than {MAX_RESPONSE_BYTES} bytes")
        try:
            return response.json()
        except ValueError:
            raise IssuerUnreachable(f"{what} is not JSON") from None

    def _get_json(self, url: str, what: str) -> Any:
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise IssuerUnreachable(f"{what} could not be fetched: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise IssuerUnreachable(f"{what} answered HTTP {response.status_code}")
        return self._json(response, what)

    def _fetch_metadata(self) -> ProviderMetadata:
        url = self.issuer_url.rstrip("/") + "/.well-known/openid-configuration"
        return parse_metadata(
            self._get_json(url, "the discovery document"),
            issuer=self.issuer_url,
            has_secret=bool(self._client_secret),
        )

    def _fetch_keys(self) -> KeySet:
        document = self._get_json(self.metadata().jwks_uri, "the issuer's keys (JWKS)")
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise IssuerUnreachable("the issuer's JWKS has no keys")
        # Only public signing keys: encryption keys and keys of other types are left out.
        usable = [
            key
            for key in document["keys"]
            if isinstance(key, dict)
            and key.get("use", "sig") == "sig"
            and key.get("kty") in ("RSA", "EC", "OKP")
        ]
        try:
            return KeySet.import_key_set({"keys": usable})
        except (JoseError, ValueError, TypeError) as exc:
            raise IssuerUnreachable(f"the issuer's JWKS cannot be read: {exc}") from None

    def metadata(self) -> ProviderMetadata:
        return self._metadata.get()

    # -- the flow -----------------------------------------------------------------------

    def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        url: str = prepare_grant_uri(
            self.metadata().authorization_endpoint,
            client_id=self._client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=self._scopes,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),  # type: ignore[no-untyped-call]
            code_challenge_method="S256",
        )
        return url

    def _exchange(self, *, code: str, redirect_uri: str, code_verifier: str) -> dict[str, Any]:
        metadata = self.metadata()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        client_auth = ClientAuth(self._client_id, self._client_secret, metadata.token_auth_method)
        url, headers, body = client_auth.prepare(  # type: ignore[no-untyped-call]
            "POST", metadata.token_endpoint, headers, body
        )
        try:
            response = self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("token exchange failed: %s", type(exc).__name__)
            raise Unavailable(
                "the single sign-on provider cannot be reached; retry later",
                reason="OIDC_PROVIDER_UNAVAILABLE",
                retry_after=ISSUER_RETRY_AFTER_SECONDS,
            ) from None
        try:
            reply = self._json(response, "the token response")
        except IssuerUnreachable:
            reply = None
        if 400 <= response.status_code < 500 and isinstance(reply, dict) and "error" in reply:
            # invalid_grant: the code was used, expired, or not issued for this verifier.
            error = str(reply.get("error"))[:64]
            log.info("the issuer refused the code: %s", error)
            raise Unauthenticated(
                f"the single sign-on provider refused the sign-in ({error}); sign in again",
                reason="OIDC_CODE_REFUSED",
            )
        if response.status_code != 200 or not isinstance(reply, dict):
            log.warning("token exchange answered HTTP %s", response.status_code)
            raise Unavailable(
                "the single sign-on provider failed to answer; retry later",
                reason="OIDC_PROVIDER_UNAVAILABLE",
                retry_after=ISSUER_RETRY_AFTER_SECONDS,
            )
        return reply

    def verify_id_token(
        self, id_token: str, *, nonce: str, access_token: str | None = None
    ) -> dict[str, Any]:
        """The ID token's claims once its signature (the issuer's JWKS, an allowed
        algorithm), iss, aud (and azp), exp, iat and nonce (and at_hash, when present)
        check out; else Unauthenticated naming the failed check."""
        metadata = self.metadata()
        try:
            try:
                token = jwt.decode(id_token, self._keys.get(), algorithms=metadata.algorithms)
            except InvalidKeyIdError:
                # Keys rotated since they were fetched: once more, with fresh keys.
                keys = self._keys.get(refresh_if_older_than=JWKS_REFETCH_SECONDS)
                token = jwt.decode(id_token, keys, algorithms=metadata.algorithms)
        except BadSignatureError:
            raise _refused("signature") from None
        except InvalidKeyIdError:
            raise _refused("unknown signing key") from None
        except JoseError as exc:
            raise _refused(exc.error or "malformed") from None
        claims = CodeIDToken(
            token.claims,
            token.header,
            options={
                "iss": {"essential": True, "value": metadata.issuer},
                "aud": {"essential": True, "value": self._client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
                "nonce": {"essential": True},
            },
            params={"nonce": nonce, "client_id": self._client_id, "access_token": access_token},
        )
        try:
            claims.validate(leeway=CLOCK_LEEWAY_SECONDS)
        except JoseError as exc:
            claim = getattr(exc, "claim", None) or exc.error or "claims"
            raise _refused(str(claim)) from None
        return dict(claims)

    def _userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        endpoint = self.metadata().userinfo_endpoint
        if endpoint is None or not access_token:
            return {}
        try:
            response = self._http.get(endpoint, headers={"Authorization": f"Bearer {access_token}"})
            reply = self._json(response, "the userinfo response")
        except (httpx.HTTPError, IssuerUnreachable) as exc:
            log.warning("userinfo could not be fetched: %s", type(exc).__name__)
            return {}
        if response.status_code != 200 or not isinstance(reply, dict):
            return {}
        # Claims about someone else are no claims about this user (Core 1.0, 5.3.2).
        return reply if reply.get("sub") == subject else {}

    def identity(
        self, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> IdentityClaims:
        """Exchanges the code and verifies the ID token: who the issuer says signed in.
        Email claims missing from the ID token are read from the userinfo endpoint."""
        reply = self._exchange(code=code, redirect_uri=redirect_uri, code_verifier=code_verifier)
        id_token = reply.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise _refused("no ID token")
        access_token = reply.get("access_token")
        access_token = access_token if isinstance(access_token, str) else None
        claims = self.verify_id_token(id_token, nonce=nonce, access_token=access_token)
        subject = str(claims["sub"])
        if "email" not in claims and access_token:
            extra = self._userinfo(access_token, subject)
            claims.update({k: extra[k] for k in ("email", "email_verified", "name") if k in extra})
        email = claims.get("email")
        name = claims.get("name") or claims.get("preferred_username")
        return IdentityClaims(
            issuer=str(claims["iss"]),
            subject=subject,
            email=email if isinstance(email, str) and email else None,
            email_verified=claims.get("email_verified") is True,
            name=name if isinstance(name, str) and name.strip() else None,
        )
