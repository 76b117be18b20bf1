"""How many connections a running download holds.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("connections", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("connections")
