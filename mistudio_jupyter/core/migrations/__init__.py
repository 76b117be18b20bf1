"""Schema migrations (Alembic), applied automatically when a Catalog opens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

HERE = Path(__file__).parent
HEAD = "0007"  # the newest revision in versions/; a test keeps the two in step
MIGRATION_LOCK_KEY = 0x6D6973747564696F  # "mistudio": the PostgreSQL advisory lock of migrations


def _stored_revision(engine: Engine) -> str | None:
    """The revision recorded in `alembic_version`; None when the table does not exist yet."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None


def _alembic_config(connection):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def _current_and_head(engine: Engine) -> tuple[str | None, str | None]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        head = ScriptDirectory.from_config(_alembic_config(connection)).get_current_head()
    return current, head


def upgrade_to_head(engine: Engine, db_url: str) -> None:
    """Bring the schema to the newest revision; concurrent openers of one catalog take turns.

    An up-to-date schema costs one query: Alembic is imported only when there is work to do.
    """
    if _stored_revision(engine) == HEAD:
        return
    current, head = _current_and_head(engine)
    if current == head:
        return
    from alembic import command
    from sqlalchemy import text

    with _migration_lock(db_url):
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # held until this transaction ends
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            command.upgrade(_alembic_config(connection), "head")


def _migration_lock(db_url: str):  # type: ignore[no-untyped-def]
    import contextlib

    if db_url.startswith("sqlite:///") and not db_url.endswith(":memory:"):
        from filelock import FileLock

        return FileLock(db_url.split(":///", 1)[1] + ".migrate.lock", timeout=60)
    return contextlib.nullcontext()
