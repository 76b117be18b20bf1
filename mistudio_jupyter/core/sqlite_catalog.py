"""The catalog file read (and a job's stop recorded) with the standard library's sqlite3.

`mistudio list` and `mistudio cancel` start in a fraction of the time that importing SQLAlchemy takes
this way. It serves only a SQLite catalog file that exists and whose schema is the newest:
`SQLiteCatalog.open` answers None for anything else (another database, no file yet, a schema to
migrate), and the caller opens the full `catalog.Catalog` instead. Its queries, stored values and
record JSON are those of `catalog.Catalog`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from .errors import NotFound
from .migrations import HEAD
from .options import ACTIVE_STATUSES, QUANTIZATIONS, STATUSES, validate_choice
from .records import RecordView, check_counts, like_pattern, resolve, sort_order, utcnow

_SQLITE_FILE_URL = re.compile(r"sqlite(\+pysqlite)?:///(?P<path>[^?]+)")
_BUSY_TIMEOUT_S = 30
_NEEDS_SQLITE = (3, 35)  # UPDATE ... RETURNING
_ILIKE = "lower({}) LIKE lower(?) ESCAPE '\\'"  # as SQLAlchemy writes `ilike` for SQLite


@dataclasses.dataclass(frozen=True)
class CatalogRow(RecordView):
    """One row of the models table, as `catalog.ModelRecord` reads it."""

    id: str
    name: str
    repo_id: str
    revision: str
    commit: str | None
    file_path: str | None
    status: str
    architecture: dict[str, Any] | None
    quantization: str
    dtype: str
    family: str | None
    model_type: str | None
    params: int | None
    size_bytes: int | None
    bytes_done: int
    bytes_total: int | None
    speed_bps: float | None
    eta_s: float | None
    current_file: str | None
    connections: int | None
    error_code: str | None
    error_message: str | None
    note: str | None
    requested_by: str | None
    gated: bool
    worker: str | None
    heartbeat_at: dt.datetime | None
    cancel_requested: bool
    measured_memory_bytes: int | None
    load_time_s: float | None
    created_at: dt.datetime
    updated_at: dt.datetime


COLUMNS = tuple(field.name for field in dataclasses.fields(CatalogRow))
_SELECT = "SELECT " + ", ".join(f'"{name}"' for name in COLUMNS) + " FROM models"  # quoted: "commit" is a keyword


def sqlite_file(db_url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL; None for any other URL (another database, in memory, options)."""
    match = _SQLITE_FILE_URL.fullmatch(db_url)
    if match is None or match["path"] == ":memory:":
        return None
    return Path(match["path"])


class SQLiteCatalog:
    """The models table of a current SQLite catalog file, over one sqlite3 connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @classmethod
    def open(cls, db_url: str) -> SQLiteCatalog | None:
        """The catalog at `db_url` when it is an existing SQLite file at the newest schema, else None."""
        path = sqlite_file(db_url)
        if path is None or sqlite3.sqlite_version_info < _NEEDS_SQLITE:
            return None
        uri = f"file:{urllib.parse.quote(str(path))}?mode=rw"  # never creates the file
        try:
            connection = sqlite3.connect(
                uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error:
            return None
        try:
            version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            version = None
        if version is None or version[0] != HEAD:
            connection.close()
            return None
        connection.execute("PRAGMA synchronous=NORMAL")
        return cls(connection)

    def close(self) -> None:
        self._connection.close()

    def get(self, model_id: str) -> CatalogRow:
        row = self._connection.execute(f"{_SELECT} WHERE id = ?", (model_id,)).fetchone()
        if row is None:
            raise NotFound(f"no model with id {model_id!r} in the catalog")
        return _record(row)

    def resolve(self, repo_or_id: str) -> CatalogRow | None:
        """The entry named by an id, else the newest entry of a repo id; None when neither."""
        return resolve(self, repo_or_id)

    def list(
        self,
        *,
        family: str | None = None,
        quantization: str | None = None,
        status: str | None = None,
        min_params: int | None = None,
        max_params: int | None = None,
        q: str | None = None,
        repo_id: str | None = None,
        sort: str = "-created_at",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[CatalogRow]:
        """Entries matching every given filter, as `Catalog.list` finds and orders them."""
        check_counts(min_params=min_params, max_params=max_params, limit=limit, offset=offset)
        conditions: list[str] = []
        values: list[Any] = []

        def where(condition: str, *arguments: Any) -> None:
            conditions.append(condition)
            values.extend(arguments)

        if family:
            where("family = ?", family)
        if quantization:
            where("quantization = ?", validate_choice("quantization", quantization, QUANTIZATIONS))
        if status:
            where("status = ?", validate_choice("status", status, STATUSES))
        if min_params is not None:
            where("params >= ?", min_params)
        if max_params is not None:
            where("params <= ?", max_params)
        if repo_id:
            where("repo_id = ?", repo_id)
        if q:
            pattern = like_pattern(q)
            where(f"({_ILIKE.format('name')} OR {_ILIKE.format('repo_id')})", pattern, pattern)
        field, descending = sort_order(sort)
        query = _SELECT + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        query += f" ORDER BY {field} {'DESC' if descending else 'ASC'}, id LIMIT ? OFFSET ?"
        values += [-1 if limit is None else limit, offset]
        return [_record(row) for row in self._connection.execute(query, values)]

    def cache_fingerprint(self, cache_dir: Path) -> str | None:
        """The fingerprint recorded by the last adoption from `cache_dir`."""
        row = self._connection.execute(
            "SELECT fingerprint FROM cache_scans WHERE cache_dir = ?", (str(cache_dir),)
        ).fetchone()
        return None if row is None else row[0]

    def update(self, model_id: str, **fields: Any) -> CatalogRow:
        """Set fields of an entry (a job's stop: its status, speed, cancel flag; a summary)."""
        assignments, values = _assignments({**fields, "updated_at": utcnow()})
        cursor = self._connection.execute(f"UPDATE models SET {assignments} WHERE id = ?", (*values, model_id))
        if cursor.rowcount == 0:
            raise NotFound(f"no model with id {model_id!r} in the catalog")
        return self.get(model_id)

    def heartbeat(self, model_id: str, worker: str, **progress: Any) -> bool:
        """As `Catalog.heartbeat`: record progress from the claiming worker; whether a cancel was requested.

        Raises NotFound when the entry is gone or another worker owns it now.
        """
        now = utcnow()
        assignments, values = _assignments({**progress, "heartbeat_at": now, "updated_at": now})
        rows = self._connection.execute(
            f"UPDATE models SET {assignments} WHERE id = ? AND worker = ? RETURNING cancel_requested",
            (*values, model_id, worker),
        ).fetchall()
        if not rows:
            raise NotFound(f"model {model_id!r} is no longer claimed by {worker}")
        return bool(rows[0][0])

    def request_cancel(self, model_id: str) -> CatalogRow:
        return self.update(model_id, cancel_requested=True)

    def mark_stopped(self, model_id: str, worker: str, status: str) -> bool:
        """As `Catalog.mark_stopped`: `worker`'s still active entry becomes `status`."""
        cursor = self._connection.execute(
            "UPDATE models SET status = ?, speed_bps = NULL, eta_s = NULL, connections = NULL, updated_at = ? "
            f"WHERE id = ? AND worker = ? AND status IN ({', '.join('?' * len(ACTIVE_STATUSES))})",
            (validate_choice("status", status, STATUSES), _stored_time(utcnow()), model_id, worker, *ACTIVE_STATUSES),
        )
        return cursor.rowcount == 1


def _column(name: str) -> str:
    if name not in COLUMNS:
        raise ValueError(f"no catalog column {name!r}")
    return f'"{name}"'


def _assignments(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    """`"a" = ?, "b" = ?` and the values as SQLAlchemy stores them (times in UTC, JSON as text)."""
    if "status" in fields:
        validate_choice("status", fields["status"], STATUSES)
    assignments = ", ".join(f"{_column(name)} = ?" for name in fields)
    return assignments, [_stored(value) for value in fields.values()]


def _stored(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _stored_time(value)
    return json.dumps(value) if isinstance(value, dict) else value


def _record(row: tuple[Any, ...]) -> CatalogRow:
    values = dict(zip(COLUMNS, row))
    for name in ("gated", "cancel_requested"):
        values[name] = bool(values[name])
    for name in ("heartbeat_at", "created_at", "updated_at"):
        values[name] = _read_time(values[name])
    if values["architecture"] is not None:
        values["architecture"] = json.loads(values["architecture"])
    return CatalogRow(**values)


def _read_time(text: str | None) -> dt.datetime | None:
    """A time as SQLAlchemy stores it in SQLite: UTC, without a zone."""
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


def _stored_time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
