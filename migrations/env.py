"""Alembic environment: one history for the tables of every service (each service owns
its own tables; none references another's)."""

from alembic import context
from sqlalchemy import create_engine, pool

import services.auth.models  # registers the tables
import services.upload.models  # noqa: F401 - registers the tables
from migrations.settings import MigrationSettings
from services.common.db import Base, sqlalchemy_url
from services.common.settings import load_settings

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    # Tests and tools may pass a URL in the Alembic config; otherwise CLOUD_DB_URI.
    url = config.attributes.get("database_url")
    return url or str(load_settings(MigrationSettings).cloud_db_uri)


def run_migrations_offline() -> None:
    context.configure(
        url=sqlalchemy_url(database_url()), target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(database_url()), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
