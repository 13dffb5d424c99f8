"""storage_tombstones: storage keys whose object must be deleted again once the last
presigned URL that could write there has expired

A single-PUT upload's URL is a presigned PutObject: until it expires it can create the
object again after the upload was aborted, deleted or reaped. Each such removal records
the key with `delete_after` (the moment its last URL expires, plus a slack); the reaper
deletes the key from storage once that moment has passed, then the tombstone
(services/upload/reaper.py). While a key has a tombstone no file can be created at it.

Revision ID: 0008_storage_tombstones
Revises: 0007_single_put_uploads
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_storage_tombstones"
down_revision: str | None = "0007_single_put_uploads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storage_tombstones",
        sa.Column("s3_key", sa.String(200), primary_key=True),
        sa.Column("delete_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    # The reaper takes the due ones, oldest first.
    op.create_index("ix_storage_tombstones_delete_after", "storage_tombstones", ["delete_after"])


def downgrade() -> None:
    op.drop_index("ix_storage_tombstones_delete_after", table_name="storage_tombstones")
    op.drop_table("storage_tombstones")
