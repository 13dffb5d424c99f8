"""The typed settings base: one settings object per process, validated at start."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AnyHttpUrl,
    AnyUrl,
    BeforeValidator,
    Field,
    PostgresDsn,
    RedisDsn,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound="BaseServiceSettings")

# Marks key material made for development (services/common/keys.py writes it into what it
# generates; the kind overlay's committed placeholders said "dev-only"): production refuses
# any secret that carries one.
DEVELOPMENT_MARKS = ("dropfile-development", "dev-only")
# Key material production checks, where a class has it (the public key is no secret, but a
# development one means the process would trust development tokens).
SECRET_FIELDS = ("private_key", "public_key", "service_token")
SERVICE_TOKEN_MIN_LENGTH = 32


def _normalized(value: str) -> str:
    return value.replace("\\n", "\n").strip()


# A URL setting's value: pydantic's URL types (PostgresDsn, allowing several hosts, is not
# an AnyUrl).
UrlSetting = AnyUrl | PostgresDsn


def url_text(url: str | UrlSetting) -> str:
    """A URL setting as the text clients take: as given, without the "/" pydantic adds to
    a URL that has no path (`http://127.0.0.1:5000`, not `http://127.0.0.1:5000/`)."""
    if isinstance(url, str):
        return url
    text = str(url)
    if url.path == "/" and url.query is None and url.fragment is None and text.endswith("/"):
        return text[:-1]
    return text


def _empty_is_unset(value: Any) -> Any:
    """An empty variable (`AWS_ENDPOINT_URL=`) means unset, as it always did."""
    return None if value == "" else value


def _at_least_characters(length: int) -> BeforeValidator:
    def check(value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and len(text) < length:
            raise PydanticCustomError(
                "string_too_short",
                "String should have at least {min_length} characters",
                {"min_length": length},
            )
        return value

    return BeforeValidator(check)


# A URL that may be left unset (empty counts as unset).
OptionalHttpUrl = Annotated[AnyHttpUrl | None, BeforeValidator(_empty_is_unset)]
# The credential services present to each other: never in logs or reprs.
ServiceToken = Annotated[SecretStr, _at_least_characters(SERVICE_TOKEN_MIN_LENGTH)]


def secret_text(value: SecretStr | str | None) -> str:
    """A secret setting's value ("" when unset), where it is used."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value or ""


class ProductionRefusal(ValueError):
    """A development default given to a production process; `variable` names the setting."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


class BaseServiceSettings(BaseSettings):
    """Settings every Dropfile process reads. Field names are the environment variables
    (case-insensitive); `.env` in the working directory is read too."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    dropfile_env: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Where development keys and secrets are generated once and kept.
    dropfile_keys_dir: Path = Path(".dropfile/keys")
    # OpenTelemetry tracing (services/common/tracing.py): spans are exported over OTLP/gRPC
    # to this collector, e.g. http://otel-collector:4317. Unset means no tracing at all.
    otel_exporter_otlp_endpoint: AnyHttpUrl | None = None
    # The service name spans carry; the process's own name (auth, gateway...) when unset.
    otel_service_name: str | None = Field(default=None, min_length=1, max_length=128)

    @property
    def development(self) -> bool:
        return self.dropfile_env == "development"

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> BaseServiceSettings:
        if self.development:
            return self
        kept: dict[str, Path] = {}  # what a development process generated on this machine
        if self.dropfile_keys_dir.is_dir():
            for path in self.dropfile_keys_dir.iterdir():
                try:
                    kept[_normalized(path.read_text())] = path
                except (OSError, UnicodeDecodeError):
                    continue
        for name in SECRET_FIELDS:
            value = secret_text(getattr(self, name, None))
            if not value:
                continue
            if any(mark in value.lower() for mark in DEVELOPMENT_MARKS):
                raise ProductionRefusal(
                    name,
                    "is a development key (it is marked as one); production needs its own secret",
                )
            if _normalized(value) in kept:
                raise ProductionRefusal(
                    name,
                    f"is the development key generated in "
                    f"{kept[_normalized(value)]}; production needs its "
                    "own secret",
                )
        return self


class GrpcServiceSettings(BaseServiceSettings):
    """Settings of a process that serves gRPC and verifies callers' tokens."""

    dropfile_bind_host: str = "127.0.0.1"
    # PEM public key that verifies access tokens (literal "\n" sequences are accepted).
    public_key: str | None = None
    # Credential internal services present to each other (x-dropfile-service-token).
    service_token: ServiceToken | None = None
    jwt_issuer: str = "dropfile-auth"
    jwt_audience: str = "dropfile"
    grpc_max_workers: int = Field(default=32, ge=1, le=1024)
    # Port of the Prometheus /metrics endpoint; unset means no endpoint.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    # Seconds in-flight RPCs get to finish on SIGTERM.
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # Redis, shared by every replica: upload sessions and live status (upload, events),
    # sign-in throttling and revoked device sessions (every service verifying tokens).
    # Not in reprs: the URL may carry a password.
    cloud_rd_uri: RedisDsn = Field(default=RedisDsn("redis://127.0.0.1:6379/0"), repr=False)
    # How long a verifier may trust its last answer from Redis on whether a device session
    # was signed out: a signed-out access token is refused everywhere within this.
    revocation_check_seconds: float = Field(default=1.0, gt=0, le=1.0)
    # How often the process checks its PostgreSQL and Redis for its readiness (the gRPC
    # health service's NOT_SERVING while one it needs is unreachable: readiness.py).
    readiness_check_interval_seconds: float = Field(default=2.0, gt=0, le=300)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Builds the settings or stops the process with one line per bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            refusal = (error.get("ctx") or {}).get("error")
            if isinstance(refusal, ProductionRefusal):  # names its variable itself
                name, message = refusal.variable.upper(), f"{refusal} (DROPFILE_ENV=production)"
            else:
                name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
                message = error["msg"]
            print(f"configuration error: {name}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


DEFAULT_CORS_ORIGINS = (
    "http://localhost:5173,http://127.0.0.1:5173,http://localhost:3000,"
    "http://127.0.0.1:3000,http://localhost:8080,http://127.0.0.1:8080"
)


class StorageSettings(BaseServiceSettings):
    """Where files are stored. Credentials come from boto3's chain (AWS_ACCESS_KEY_ID...,
    or IAM roles); AWS_ENDPOINT_URL(_S3|_SQS) point at a local store."""

    aws_region: str = Field(default="us-east-1", min_length=1)
    aws_endpoint_url: OptionalHttpUrl = None
    aws_endpoint_url_s3: OptionalHttpUrl = None
    aws_endpoint_url_sqs: OptionalHttpUrl = None
    s3_bucket: str = Field(
        default="dropfile", min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$"
    )

    @property
    def s3_endpoint(self) -> str | None:
        endpoint = self.aws_endpoint_url_s3 or self.aws_endpoint_url
        return None if endpoint is None else url_text(endpoint)

    @property
    def sqs_endpoint(self) -> str | None:
        endpoint = self.aws_endpoint_url_sqs or self.aws_endpoint_url
        return None if endpoint is None else url_text(endpoint)


class CorsSettings(BaseServiceSettings):
    # Comma-separated origins allowed to call with credentials (browsers, dev servers).
    cors_origins: str = DEFAULT_CORS_ORIGINS

    @property
    def cors_origin_list(self) -> list[str]:
        return [
            origin.strip().rstrip("/") for origin in self.cors_origins.split(",") if origin.strip()
        ]

    @model_validator(mode="after")
    def _own_origins_in_production(self) -> CorsSettings:
        # The default lists developers' local servers: in production it would let any page
        # served on a user's localhost call the API with the user's cookies.
        default = {origin.strip() for origin in DEFAULT_CORS_ORIGINS.split(",")}
        if not self.development and set(self.cors_origin_list) == default:
            raise ProductionRefusal(
                "cors_origins",
                "is the development default (localhost "
                "origins only); set the origins your users' browsers "
                "load Dropfile from",
            )
        return self
