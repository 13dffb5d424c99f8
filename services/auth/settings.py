"""Settings of the auth service."""

from pydantic import Field, PostgresDsn, SecretStr, model_validator

from services.common.settings import GrpcServiceSettings


class AuthSettings(GrpcServiceSettings):
    # Not in reprs: the URL may carry a password.
    cloud_db_uri: PostgresDsn = Field(
        default=PostgresDsn("postgresql://postgres@127.0.0.1:5432/dropfile"), repr=False
    )
    # PEM private key that signs access tokens (literal "\n" sequences are accepted).
    private_key: SecretStr | None = None
    auth_grpc_port: int = Field(default=50051, ge=0, le=65535)
    access_token_ttl_seconds: int = Field(default=15 * 60, ge=30)
    # "Remember me" sessions, and the default one-day sessions.
    long_session_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    short_session_ttl_seconds: int = Field(default=24 * 3600, ge=300)
    # A refresh token presented again this soon after it was rotated (two tabs, two CLI
    # processes, a retry whose answer was lost) gets the same new token instead of ending
    # the device session; 0 ends it at once.
    refresh_reuse_grace_seconds: float = Field(default=30.0, ge=0, le=300)
    bcrypt_rounds: int = Field(default=12, ge=10, le=16)
    # Threads hashing passwords (default: one per usable core) and how much they lower
    # their scheduling priority (nice), so that sign-in storms do not stall other requests
    # on the same machine. 0 keeps the priority.
    bcrypt_threads: int | None = Field(default=None, ge=1, le=256)
    bcrypt_niceness: int = Field(default=10, ge=0, le=19)
    # Sign-ins and sign-ups admitted at once (hashing, or waiting for a hashing thread);
    # one more is answered UNAVAILABLE (503, Retry-After) at once. At most half of
    # GRPC_MAX_WORKERS, so that Refresh and every other RPC always find a thread.
    bcrypt_max_pending: int = Field(default=16, ge=1, le=512)

    # Sign-in throttling, shared by every replica through Redis (CLOUD_RD_URI). Each
    # attempt counts before its password is checked; a success forgets the failures.
    # Per account and client address (or per device holding a valid session of the
    # account): this many attempts are free, then each waits twice as long as the last
    # (SIGNIN_BASE_DELAY_SECONDS, doubling, at most SIGNIN_MAX_DELAY_SECONDS), answered
    # 429 with Retry-After.
    signin_free_failures: int = Field(default=5, ge=1, le=1000)
    # The same across every address (devices with a session of the account excepted), so
    # that guessing from many addresses stays as slow.
    signin_account_free_failures: int = Field(default=6, ge=1, le=10000)
    signin_base_delay_seconds: float = Field(default=1.0, gt=0, le=3600)
    signin_max_delay_seconds: float = Field(default=900.0, gt=0, le=86400)
    # Failures are forgotten after this long without an attempt.
    signin_failure_window_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    # Sign-ups one client address may attempt per window (IPv6: per /64).
    signup_per_address: int = Field(default=20, ge=1, le=1_000_000)
    signup_window_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)

    # Single sign-on with OpenID Connect (services/auth/oidc/): off unless both the issuer
    # and the client id are set. The issuer's discovery document
    # (<issuer>/.well-known/openid-configuration) names its endpoints and keys.
    oidc_issuer_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    oidc_client_id: str | None = Field(default=None, min_length=1, max_length=512)
    # Unset for a public client (PKCE alone); sent as the issuer's discovery document
    # prefers (client_secret_basic, else client_secret_post).
    oidc_client_secret: SecretStr | None = None
    # The button's "Sign in with <name>".
    oidc_provider_name: str = Field(default="SSO", min_length=1, max_length=60)
    # Space-separated; must include openid. email is needed for the account's address.
    oidc_scopes: str = Field(default="openid email profile", min_length=6, max_length=1000)
    # How long a sign-in may stay at the issuer (from the button to the callback).
    oidc_flow_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    # How long the discovery document and the issuer's keys (JWKS) are kept; an ID token
    # signed by an unknown key id fetches the keys again (at most once a second).
    oidc_metadata_ttl_seconds: int = Field(default=3600, ge=10, le=7 * 86400)
    # Each request to the issuer (discovery, keys, token exchange, userinfo).
    oidc_http_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Sign-ins one client address (IPv6: one /64) may start per OIDC_FLOW_TTL_SECONDS:
    # each keeps a flow in Redis until it ends or expires.
    oidc_starts_per_address: int = Field(default=30, ge=1, le=100_000)

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer_url and self.oidc_client_id)

    @model_validator(mode="after")
    def _oidc_complete(self) -> "AuthSettings":
        if bool(self.oidc_issuer_url) != bool(self.oidc_client_id):
            missing = "OIDC_CLIENT_ID" if self.oidc_issuer_url else "OIDC_ISSUER_URL"
            raise ValueError(f"single sign-on needs {missing} too (or neither, to turn it off)")
        if self.oidc_enabled:
            if "openid" not in self.oidc_scopes.split():
                raise ValueError("OIDC_SCOPES must include openid")
            issuer = self.oidc_issuer_url or ""
            if not self.development and not issuer.startswith("https://"):
                raise ValueError("OIDC_ISSUER_URL must be https:// outside development")
        return self

    @model_validator(mode="after")
    def _sign_ins_leave_workers(self) -> "AuthSettings":
        if self.bcrypt_max_pending > self.grpc_max_workers // 2:
            raise ValueError(
                f"BCRYPT_MAX_PENDING ({self.bcrypt_max_pending}) must be at most half of "
                f"GRPC_MAX_WORKERS ({self.grpc_max_workers}): sign-ins waiting for a hash "
                "would otherwise take the threads other RPCs need"
            )
        if self.signin_max_delay_seconds < self.signin_base_delay_seconds:
            raise ValueError("SIGNIN_MAX_DELAY_SECONDS must be at least SIGNIN_BASE_DELAY_SECONDS")
        return self
