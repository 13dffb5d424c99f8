"""The share links' JSON bodies (`/api/v2/files/{id}/links`, `/api/v2/links/{id}`), as
pydantic models: requests refuse unknown fields and wrong types (400), responses document
the API in /docs. The bounds here are the widest the upload service accepts; it decides
the rest (the expiry's configured maximum, the password's 72 bytes)."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

from .schemas import NO_NUL_PATTERN, RequestBody, _text, whole

# The longest expiry any configuration allows (SHARE_LINK_MAX_TTL_SECONDS is at most 10
# years); the server's own maximum (30 days by default) is checked by the service.
MAX_EXPIRY_SECONDS = 10 * 365 * 86400
MAX_DOWNLOADS = 1_000_000

# A JSON number without a fraction (3600.0) is an integer, as everywhere (schemas.whole).
ExpirySeconds = Annotated[
    int, Strict(), Field(ge=60, le=MAX_EXPIRY_SECONDS), BeforeValidator(whole)
]
DownloadLimit = Annotated[int, Strict(), Field(ge=1, le=MAX_DOWNLOADS), BeforeValidator(whole)]
LinkPassword = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=NO_NUL_PATTERN, max_length=72),
    AfterValidator(_text),
]


class CreateLinkBody(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        regex_engine="python-re",
        json_schema_extra={
            "examples": [{"expiresInSeconds": 86400, "password": "correct pony", "maxDownloads": 5}]
        },
    )
    expiresInSeconds: ExpirySeconds | None = Field(
        default=None,
        description="Seconds until the link stops working; omitted: the server's default "
        "(7 days). At most the server's maximum (30 days by default)",
    )
    password: LinkPassword | None = Field(
        default=None,
        description="A password the downloader must give (at most 72 bytes); omitted or "
        "empty: none",
    )
    maxDownloads: DownloadLimit | None = Field(
        default=None, description="Downloads the link serves, then it stops; omitted: unlimited"
    )


class CreateLinkReply(BaseModel):
    linkId: str
    url: str = Field(
        description="`<public base URL>/s/<token>`: shown this once, only a hash is stored"
    )
    expiresAt: str = Field(description="ISO 8601, UTC")
    maxDownloads: int | None = Field(description="null: unlimited")
    passwordProtected: bool


class LinkEntry(BaseModel):
    linkId: str
    fileId: str
    createdAt: str = Field(description="ISO 8601, UTC")
    expiresAt: str = Field(description="ISO 8601, UTC")
    maxDownloads: int | None = Field(description="null: unlimited")
    downloadCount: int = Field(description="Downloads served so far")
    passwordProtected: bool


class LinksReply(BaseModel):
    links: list[LinkEntry] = Field(description="Newest first; revoked links are gone")
