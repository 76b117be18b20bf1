"""Alembic environment: runs on the connection handed in by `upgrade_to_head`."""

from alembic import context

from mistudio_jupyter.core.catalog import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
