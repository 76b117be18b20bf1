"""The models table.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("repo_id", sa.String(255), nullable=False),
        sa.Column("revision", sa.String(255), nullable=False),
        sa.Column("commit", sa.String(64)),
        sa.Column("file_path", sa.String(1024)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("architecture", sa.JSON),
        sa.Column("quantization", sa.String(32), nullable=False),
        sa.Column("dtype", sa.String(32), nullable=False),
        sa.Column("family", sa.String(64)),
        sa.Column("model_type", sa.String(64)),
        sa.Column("params", sa.BigInteger),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("bytes_done", sa.BigInteger, nullable=False),
        sa.Column("bytes_total", sa.BigInteger),
        sa.Column("speed_bps", sa.Float),
        sa.Column("eta_s", sa.Float),
        sa.Column("current_file", sa.String(1024)),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("gated", sa.Boolean, nullable=False),
        sa.Column("worker", sa.String(255)),
        sa.Column("heartbeat_at", sa.DateTime()),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("measured_memory_bytes", sa.BigInteger),
        sa.Column("load_time_s", sa.Float),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("repo_id", "revision", "quantization", "dtype", name="uq_models_entry"),
    )
    op.create_index("ix_models_repo_id", "models", ["repo_id"])
    op.create_index("ix_models_status", "models", ["status"])


def downgrade() -> None:
    op.drop_table("models")
