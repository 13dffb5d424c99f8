"""Settings of the auth service."""
from pydantic import Field

from services.common.settings import GrpcServiceSettings


class AuthSettings(GrpcServiceSettings):
    cloud_db_uri: str = Field(default="postgresql://postgres@127.0.0.1:5432/dropfile", min_length=1)
    # PEM private key that signs access tokens (literal "\n" sequences are accepted).
    private_key: str | None = None
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
