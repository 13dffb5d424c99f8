"""identities at an OpenID Connect issuer linked to users; accounts without a password

Revision ID: 0004_oidc_identities
Revises: 0003_refresh_grace
"""

import base64
import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_oidc_identities"
down_revision: str | None = "0003_refresh_grace"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oidc_identities",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "last_used_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "subject", name="uq_oidc_identities_issuer_subject"),
        sa.UniqueConstraint("user_id", "issuer", name="uq_oidc_identities_user_issuer"),
    )
    # Accounts created by single sign-on have no password.
    op.alter_column("users", "password_hash", existing_type=sa.String(length=100), nullable=True)


def downgrade() -> None:
    # Passwordless accounts get a bcrypt hash of a random secret nobody knows: the older
    # code refuses their password sign-ins as it refuses a wrong password.
    import bcrypt

    unknowable = bcrypt.hashpw(base64.b64encode(os.urandom(32)), bcrypt.gensalt(4)).decode()
    op.execute(
        sa.text("UPDATE users SET password_hash = :hash WHERE password_hash IS NULL").bindparams(
            hash=unknowable
        )
    )
    op.alter_column("users", "password_hash", existing_type=sa.String(length=100), nullable=False)
    op.drop_table("oidc_identities")
