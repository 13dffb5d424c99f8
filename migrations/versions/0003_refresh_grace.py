"""device sessions keep the previous refresh token for a short grace window

Revision ID: 0003_refresh_grace
Revises: 0002_checksums_quota
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_refresh_grace"
down_revision: str | None = "0002_checksums_quota"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "device_sessions",
        sa.Column("previous_refresh_token_hash", sa.String(length=64), nullable=True),
    )
    op.add_column(
        "device_sessions",
        sa.Column("refresh_token_rotated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "device_sessions", sa.Column("sealed_refresh_token", sa.String(length=128), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("device_sessions", "sealed_refresh_token")
    op.drop_column("device_sessions", "refresh_token_rotated_at")
    op.drop_column("device_sessions", "previous_refresh_token_hash")
