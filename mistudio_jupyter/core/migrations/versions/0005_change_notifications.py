"""On PostgreSQL, every insert, update and delete of a catalog entry notifies the entry's id on the
`mistudio_models` channel, so processes that follow the catalog hear of changes instead of polling.
SQLite has no notifications: this revision changes nothing there.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOTIFY_FUNCTION = """
CREATE FUNCTION mistudio_notify_models() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('mistudio_models', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER mistudio_models_changed AFTER INSERT OR UPDATE OR DELETE ON models
FOR EACH ROW EXECUTE FUNCTION mistudio_notify_models()
"""


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER mistudio_models_changed ON models")
        op.execute("DROP FUNCTION mistudio_notify_models()")
