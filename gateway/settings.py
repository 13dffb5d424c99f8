"""Settings of the REST gateway."""

from __future__ import annotations

from pydantic import Field, model_validator

from services.common.settings import CorsSettings, ServiceToken


class GatewaySettings(CorsSettings):
    dropfile_http_host: str = "127.0.0.1"
    dropfile_http_port: int = Field(default=8080, ge=0, le=65535)
    auth_service_addr: str = Field(default="127.0.0.1:50051", min_length=1)
    upload_service_addr: str = Field(default="127.0.0.1:50052", min_length=1)
    events_service_addr: str = Field(default="127.0.0.1:50053", min_length=1)
    # Deadline of every backend call made for a request.
    grpc_timeout_seconds: float = Field(default=30.0, gt=0)
    # A throttled sign-in or sign-up (429), or one refused while password hashing is full
    # (503), is answered after its Retry-After, at most this long: clients ignoring
    # Retry-After cannot flood the gateway with refused attempts. 0 answers at once.
    throttled_answer_delay_seconds: float = Field(default=1.0, ge=0, le=30)
    # GET /api/v2/events (Server-Sent Events): a comment line this often while nothing
    # happens, so proxies keep a quiet stream open; and how long one stream lasts before the
    # browser reconnects (with the cookie's current token: a signed-out session's stream
    # does not outlive this).
    sse_heartbeat_seconds: int = Field(default=15, ge=1, le=300)
    sse_max_stream_seconds: float = Field(default=900.0, ge=10, le=86400)
    # Record-chunk requests that arrive while this many RecordParts calls are outstanding
    # wait and leave together in the next (gateway/part_recorder.py), up to the batch size.
    record_part_batches_in_flight: int = Field(default=2, ge=1, le=64)
    record_part_batch_size: int = Field(default=64, ge=1, le=500)
    # Records of one session (access token) waiting to be sent; beyond it that session's
    # record requests are answered 429 with Retry-After until they leave. Other sessions'
    # records are taken in turn with its own, never behind its whole queue.
    record_part_max_waiting_per_session: int = Field(default=1000, ge=1, le=100_000)
    # Calls to the upload coordinator in flight from this gateway at once; more wait in
    # the gateway, in order, never refused (gateway/call_limits.py). Twice the
    # coordinator's worker threads (GRPC_MAX_WORKERS, 32) keeps them all busy.
    upload_max_calls_in_flight: int = Field(default=64, ge=1, le=10_000)
    # Slow and numerous connections (gateway/http_protocol.py, middleware.py). A request's
    # headers must arrive within http_header_timeout_seconds of the connection opening or
    # the previous response (408, connection closed), its body within
    # http_body_timeout_seconds of its headers (408); headers over http_max_header_bytes
    # are 431. Beyond http_max_connections open connections (or requests in progress:
    # every live-status stream holds one), requests are answered 503 at once. An idle
    # keep-alive connection is closed after http_keep_alive_seconds.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_body_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    http_max_header_bytes: int = Field(default=64 * 1024, ge=4096, le=1024 * 1024)
    http_max_connections: int = Field(default=1000, ge=1, le=100_000)
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    # The largest file the upload service takes, v1 and v2 (its MAX_FILE_SIZE_BYTES and
    # V2_MAX_FILE_SIZE_BYTES, read here under the same names): the gateway only states them
    # in the API document (openapi.py), so set them as the upload service's.
    max_file_size_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    v2_max_file_size_bytes: int = Field(default=5 * 1024**4, ge=1, le=10_000 * 5 * 1024**3)
    # Deadline of each backend's health check in /readyz (probes must answer quickly).
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    # Largest request body accepted. The biggest v1 body, complete-upload with S3's
    # maximum of 10,000 parts, is about 600 KB.
    max_request_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    # Port of the Prometheus /metrics endpoint, apart from the public HTTP port. Unset: a
    # development gateway answers /metrics on its HTTP port, a production one nowhere.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    # Proxies in front of the gateway that each append the address they were reached from
    # to X-Forwarded-For (a load balancer: 1). The client's address, which sign-in and
    # sign-up limits count by, is the one that many entries from the end; 0 (no proxy):
    # the connection's own, and X-Forwarded-For is ignored (anyone can send one).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
    # Single sign-on: the callback URL the issuer sends browsers back to, exactly as
    # registered there. Unset: this gateway's own, as the browser reached it
    # (<scheme>://<host>/api/v2/auth/oidc/callback); set it behind a proxy that changes the
    # scheme or host (TLS ended at a load balancer).
    oidc_redirect_uri: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    # Credential the gateway presents to auth with the client's address, so auth believes
    # the address (x-dropfile-service-token). Generated once in development.
    service_token: ServiceToken | None = None
    # Where strangers reach this gateway, for the URLs of share links
    # (`<public_base_url>/s/<token>`), e.g. https://files.example.com. Unset: the address
    # each request came to (right on a developer's machine, not behind a proxy).
    public_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")

    @property
    def secure_cookies(self) -> bool:
        """Cookies need HTTPS everywhere but on a developer's machine."""
        return not self.development

    @model_validator(mode="after")
    def _no_wildcard_origin(self) -> GatewaySettings:
        # Credentials are sent cross-origin, so "*" would let any site act as the user.
        if "*" in self.cors_origin_list:
            raise ValueError(
                "CORS_ORIGINS must list origins explicitly; '*' is refused "
                "because requests carry credentials"
            )
        return self
