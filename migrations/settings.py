"""Settings of the migration command (the Kubernetes migration Job runs it too)."""

from pydantic import Field

from services.common.settings import BaseServiceSettings


class MigrationSettings(BaseServiceSettings):
    cloud_db_uri: str = Field(default="postgresql://postgres@127.0.0.1:5432/dropfile", min_length=1)
