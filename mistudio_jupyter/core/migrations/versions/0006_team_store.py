"""Who asked for each entry, and the audit log of downloads, cancels and deletes.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("requested_by", sa.String(255)))
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("model_id", sa.String(36)),
        sa.Column("repo_id", sa.String(255)),
        sa.Column("revision", sa.String(255)),
    )


def downgrade() -> None:
    op.drop_table("audit")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("requested_by")
