"""files: indexes for listing a user's files a page at a time and filtering them by name

ListFiles pages by keyset, newest first: `WHERE user_id = $1 AND (created_at, id) < ($2,
$3) ORDER BY created_at DESC, id DESC LIMIT n`. ix_files_user_created_id answers it with one
index range scan whatever the page's depth; it replaces ix_files_user_created (user_id,
created_at), whose every use it serves too.

The name filter is a case-insensitive substring (`file_name ILIKE '%text%'`):
ix_files_user_name_trgm, a GIN index of (user_id, file_name's trigrams), finds one user's
names holding a text of 3 characters or more at once, where without it a filter that
matches few of a large user's files reads all of them (and a trigram index of names
alone would read every user's matches). It needs pg_trgm (trigrams) and btree_gin (the
uuid column in a GIN index), both shipped with PostgreSQL (contrib) and trusted since 13,
so the database's owner may create them. Where they cannot be created the index is left
out with a warning: filters then cost a scan of the user's files (~50 ms per 100,000).

Every index is built CONCURRENTLY (outside the migration's transaction), so writes go on
while it is built on a large table; a build left invalid by an earlier failure is
dropped and built again.

Revision ID: 0006_file_listing_index
Revises: 0005_share_links
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0006_file_listing_index"
down_revision: str | None = "0005_share_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LISTING_INDEX = "ix_files_user_created_id"
OLD_LISTING_INDEX = "ix_files_user_created"
NAME_INDEX = "ix_files_user_name_trgm"
EXTENSIONS = ("pg_trgm", "btree_gin")


def _drop_if_invalid(name: str) -> None:
    """A CREATE INDEX CONCURRENTLY that failed leaves an invalid index behind, which
    IF NOT EXISTS would keep."""
    if context.is_offline_mode():
        return
    invalid = op.get_bind().scalar(
        sa.text(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND pg_table_is_visible(c.oid)"
        ),
        {"name": name},
    )
    if invalid:
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def _extension_available(name: str) -> bool:
    """The extension is installed, or can be: shipped with the server and ours to create
    (a superuser, or the database's CREATE privilege for a trusted extension)."""
    if context.is_offline_mode():
        return True
    installed, available, allowed = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = :name),"
                " EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = :name),"
                " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
                "   OR has_database_privilege(current_database(), 'CREATE')"
            ),
            {"name": name},
        )
        .one()
    )
    return bool(installed or (available and allowed))


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _drop_if_invalid(LISTING_INDEX)
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {LISTING_INDEX} "
            "ON files (user_id, created_at DESC, id DESC)"
        )
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {OLD_LISTING_INDEX}")
        if all(_extension_available(name) for name in EXTENSIONS):
            for name in EXTENSIONS:
                op.execute(f"CREATE EXTENSION IF NOT EXISTS {name}")
            _drop_if_invalid(NAME_INDEX)
            op.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NAME_INDEX} "
                "ON files USING gin (user_id, file_name gin_trgm_ops)"
            )
        else:
            context.config.print_stdout(
                "warning: pg_trgm or btree_gin cannot be created: file name filters "
                "will read each user's files (no trigram index)"
            )


def downgrade() -> None:
    # The extensions stay: other objects may use them, and they cost nothing unused.
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME_INDEX}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {OLD_LISTING_INDEX} "
            "ON files (user_id, created_at)"
        )
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {LISTING_INDEX}")
