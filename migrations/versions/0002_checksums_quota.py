"""v2 uploads: per-part checksums and the whole file's SHA-256

Revision ID: 0002_checksums_quota
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_checksums_quota"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("files", sa.Column("checksum_algorithm", sa.String(length=16), nullable=True))
    op.add_column("files", sa.Column("sha256", sa.String(length=64), nullable=True))
    op.add_column("chunks", sa.Column("checksum", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("chunks", "checksum")
    op.drop_column("files", "sha256")
    op.drop_column("files", "checksum_algorithm")
