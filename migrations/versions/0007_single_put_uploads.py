"""files uploaded by one presigned PutObject instead of a multipart upload

Revision ID: 0007_single_put_uploads
Revises: 0006_file_listing_index
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_single_put_uploads"
down_revision: str | None = "0006_file_listing_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "files",
        sa.Column("single_put", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("files", "single_put")
