"""Settings of the migration command (the Kubernetes migration Job runs it too)."""

from pydantic import Field, PostgresDsn

from services.common.settings import BaseServiceSettings


class MigrationSettings(BaseServiceSettings):
    # Not in reprs: the URL may carry a password.
    cloud_db_uri: PostgresDsn = Field(
        default=PostgresDsn("postgresql://postgres@127.0.0.1:5432/dropfile"), repr=False
    )
