"""What each model cache looked like when it was last adopted from.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cache_scans",
        sa.Column("cache_dir", sa.String(1024), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("scanned_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache_scans")
