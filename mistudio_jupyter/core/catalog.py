"""The catalog: one SQL table of models, the coordination point of every process.

SQLAlchemy 2 typed ORM over SQLite (WAL) by default, or PostgreSQL (`postgresql+psycopg://…`, the
`mistudio-jupyter[postgres]` extra) for a catalog that several hosts share. The schema is owned by the
Alembic migrations in `core/migrations`, applied automatically when a Catalog opens.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql import Select

from .errors import InvalidArgument, NotFound
from .options import DTYPES, QUANTIZATIONS, STATUSES, validate_choice
from .records import RecordView, check_counts, like_pattern, sort_order, utcnow

RESUMABLE = ("pending", "cancelled", "failed", "interrupted")
ACTIVE = ("pending", "downloading")
_IDS_PER_QUERY = 500  # well under SQLite's limit on bound parameters


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them without a zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("catalog times must be timezone-aware")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class ModelRecord(RecordView, Base):
    """One catalog entry: a repo revision and how it will be loaded."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("repo_id", "revision", "quantization", "dtype", name="uq_models_entry"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    name: Mapped[str] = mapped_column(String(255))
    repo_id: Mapped[str] = mapped_column(String(255), index=True)
    revision: Mapped[str] = mapped_column(String(255), default="main")
    commit: Mapped[str | None] = mapped_column(String(64))
    file_path: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(32), default="pending", index=True)
    architecture: Mapped[dict | None] = mapped_column(JSON)
    quantization: Mapped[str] = mapped_column(String(32), default="none")
    dtype: Mapped[str] = mapped_column(String(32), default="auto")
    family: Mapped[str | None] = mapped_column(String(64))
    model_type: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[int | None] = mapped_column(BigInteger)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    speed_bps: Mapped[float | None] = mapped_column(Float)
    eta_s: Mapped[float | None] = mapped_column(Float)
    current_file: Mapped[str | None] = mapped_column(String(1024))
    connections: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(255))
    gated: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    measured_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    load_time_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CacheScan(Base):
    """The fingerprint of a model cache when the catalog last adopted from it."""

    __tablename__ = "cache_scans"

    cache_dir: Mapped[str] = mapped_column(String(1024), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    scanned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AuditEntry(Base):
    """One download, resume, cancel, delete or prune: who asked, what, when (never a token)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    model_id: Mapped[str | None] = mapped_column(String(36))
    repo_id: Mapped[str | None] = mapped_column(String(255))
    revision: Mapped[str | None] = mapped_column(String(255))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "user": self.user,
            "action": self.action,
            "model_id": self.model_id,
            "repo_id": self.repo_id,
            "revision": self.revision,
        }


AUDIT_ACTIONS = ("download", "resume", "cancel", "delete", "prune")


class Lease(Base):
    """A process's hold on an entry while it has the entry's model loaded (see `leases`): renewed by the
    holder's heartbeat, it counts only while that heartbeat is fresh."""

    __tablename__ = "leases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    model_id: Mapped[str] = mapped_column(String(36), index=True)
    commit: Mapped[str | None] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_id": self.model_id,
            "commit": self.commit,
            "holder": self.holder,
            "created_at": self.created_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
        }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(db_url: str) -> Engine:
    if db_url.startswith("sqlite"):
        path = db_url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(db_url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(db_url, pool_pre_ping=True)
    except ImportError as error:
        hint = " (pip install 'mistudio-jupyter[postgres]')" if db_url.startswith("postgresql+psycopg") else ""
        raise InvalidArgument(f"the catalog URL needs a database driver that is not installed{hint}: {error}") from None


class Catalog:
    """The models table and its atomic operations."""

    def __init__(self, db_url: str) -> None:
        from .migrations import upgrade_to_head

        self.db_url = db_url
        self.engine = make_engine(db_url)
        upgrade_to_head(self.engine, db_url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return self._sessions()

    def add(
        self,
        repo_id: str,
        *,
        revision: str = "main",
        quantization: str = "none",
        dtype: str = "auto",
        name: str | None = None,
        **fields: Any,
    ) -> tuple[ModelRecord, bool]:
        """Add an entry, or return the existing one for the same repo, revision, quantization and dtype.

        The unique key makes this safe across processes: of two racing adds, one inserts and the
        other gets that row back.
        """
        validate_choice("quantization", quantization, QUANTIZATIONS)
        validate_choice("dtype", dtype, DTYPES)
        existing = self.find(repo_id, revision, quantization, dtype)
        if existing is not None:
            return existing, False
        record = ModelRecord(
            repo_id=repo_id,
            revision=revision,
            quantization=quantization,
            dtype=dtype,
            name=name or repo_id,
            **fields,
        )
        try:
            with self._session() as session, session.begin():
                session.add(record)
        except IntegrityError:
            existing = self.find(repo_id, revision, quantization, dtype)
            if existing is None:
                raise
            return existing, False
        return record, True

    def find(self, repo_id: str, revision: str, quantization: str, dtype: str) -> ModelRecord | None:
        query = (
            select(ModelRecord)
            .where(
                ModelRecord.repo_id == repo_id,
                ModelRecord.revision == revision,
                ModelRecord.quantization == quantization,
                ModelRecord.dtype == dtype,
            )
            .order_by(ModelRecord.created_at)
        )
        with self._session() as session:
            return session.scalars(query).first()

    def get(self, model_id: str) -> ModelRecord:
        with self._session() as session:
            record = session.get(ModelRecord, model_id)
        if record is None:
            raise NotFound(f"no model with id {model_id!r} in the catalog")
        return record

    def get_many(self, model_ids: Iterable[str]) -> list[ModelRecord]:
        """The entries with these ids that still exist, least recently updated first."""
        ids, records = list(model_ids), []
        with self._session() as session:
            for start in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[start : start + _IDS_PER_QUERY]
                records.extend(session.scalars(select(ModelRecord).where(ModelRecord.id.in_(chunk))))
        return sorted(records, key=lambda record: record.updated_at)

    def versions(self) -> dict[str, dt.datetime]:
        """Every entry's id and last update: what a change tracker compares between two looks."""
        with self._session() as session:
            return dict(session.execute(select(ModelRecord.id, ModelRecord.updated_at)).tuples().all())

    def update(self, model_id: str, **fields: Any) -> ModelRecord:
        unknown = set(fields) - set(ModelRecord.__table__.columns.keys())
        if unknown:
            raise InvalidArgument(f"unknown catalog field(s): {', '.join(sorted(unknown))}")
        if "status" in fields:
            validate_choice("status", fields["status"], STATUSES)
        fields["updated_at"] = utcnow()
        with self._session() as session, session.begin():
            result = session.execute(update(ModelRecord).where(ModelRecord.id == model_id).values(**fields))
        if result.rowcount == 0:
            raise NotFound(f"no model with id {model_id!r} in the catalog")
        return self.get(model_id)

    def delete(self, model_id: str) -> ModelRecord:
        """Remove an entry and its leases."""
        with self._session() as session, session.begin():
            record = session.get(ModelRecord, model_id)
            if record is None:
                raise NotFound(f"no model with id {model_id!r} in the catalog")
            session.delete(record)
            session.execute(delete(Lease).where(Lease.model_id == model_id))
        return record

    def list(self, **filters: Any) -> list[ModelRecord]:
        """Entries matching every given filter (family, quantization, status, min_params, max_params, q,
        repo_id), sorted by `sort` (a field name, `-` first for descending), then `limit` and `offset`."""
        with self._session() as session:
            return list(session.scalars(_listing(select(ModelRecord), **filters)))

    def list_versions(self, **filters: Any) -> list[tuple[str, Any]]:
        """The id and version of each entry `list(**filters)` returns, in its order: what a cache of
        entries checks itself against without reading whole rows. A version is the entry's last update
        as the database driver returns it (to compare, never to read: converting 10,000 of them costs
        more than the query), and every write moves it."""
        with self.engine.connect() as connection:
            return _fetch_all(connection, _listing(select(ModelRecord.id, ModelRecord.updated_at), **filters))

    def claim(self, model_id: str, worker: str, *, stale_after_s: float = 30.0) -> bool:
        """Atomically make `worker` the downloader of an entry; exactly one of racing claimants wins.

        An entry can be claimed when it is not downloading, or when its download's heartbeat is stale.
        """
        now = utcnow()
        stale_before = now - dt.timedelta(seconds=stale_after_s)
        claimable = or_(
            ModelRecord.status.in_(RESUMABLE),
            (ModelRecord.status == "downloading") & (ModelRecord.heartbeat_at < stale_before),
            (ModelRecord.status == "downloading")
            & (ModelRecord.heartbeat_at.is_(None))
            & (ModelRecord.worker.is_(None)),
        )
        statement = (
            update(ModelRecord)
            .where(ModelRecord.id == model_id, claimable)
            .values(
                status="downloading",
                worker=worker,
                heartbeat_at=now,
                cancel_requested=False,
                error_code=None,
                error_message=None,
                note=None,
                updated_at=now,
            )
        )
        if self.engine.dialect.name == "postgresql":
            # A row another claimant has locked is skipped, not waited for: that claimant wins.
            locked = select(ModelRecord.id).where(ModelRecord.id == model_id, claimable)
            statement = statement.where(ModelRecord.id.in_(locked.with_for_update(skip_locked=True)))
        with self._session() as session, session.begin():
            return session.execute(statement).rowcount == 1

    def heartbeat(self, model_id: str, worker: str, **progress: Any) -> bool:
        """Record progress from the claiming worker; returns whether a cancel was requested.

        Raises NotFound when the entry is gone or another worker owns it now.
        """
        now = utcnow()
        statement = (
            update(ModelRecord)
            .where(ModelRecord.id == model_id, ModelRecord.worker == worker)
            .values(heartbeat_at=now, updated_at=now, **progress)
        )
        with self._session() as session, session.begin():
            if session.execute(statement).rowcount == 0:
                raise NotFound(f"model {model_id!r} is no longer claimed by {worker}")
            return bool(session.scalar(select(ModelRecord.cancel_requested).where(ModelRecord.id == model_id)))

    def hand_over(self, model_id: str, worker: str, successor: str) -> bool:
        """Pass the claim held by `worker` to `successor`; False when `worker` no longer holds it."""
        statement = (
            update(ModelRecord)
            .where(ModelRecord.id == model_id, ModelRecord.worker == worker)
            .values(worker=successor, heartbeat_at=utcnow(), updated_at=utcnow())
        )
        with self._session() as session, session.begin():
            return session.execute(statement).rowcount == 1

    def mark_stopped(self, model_id: str, worker: str, status: str) -> bool:
        """Record that `worker` is gone: its still active entry becomes `status` (`interrupted` or
        `cancelled`). An entry it finished, or that another worker claimed meanwhile, stays as it is."""
        statement = (
            update(ModelRecord)
            .where(ModelRecord.id == model_id, ModelRecord.worker == worker, ModelRecord.status.in_(ACTIVE))
            .values(
                status=validate_choice("status", status, STATUSES),
                speed_bps=None,
                eta_s=None,
                connections=None,
                updated_at=utcnow(),
            )
        )
        with self._session() as session, session.begin():
            return session.execute(statement).rowcount == 1

    def request_cancel(self, model_id: str) -> ModelRecord:
        return self.update(model_id, cancel_requested=True)

    def adopt(self, cache_dir: str | Path) -> list[ModelRecord]:
        """Add every complete model revision already in the HF cache as a ready entry."""
        from .adoption import cached_model_revisions

        adopted = []
        for found in cached_model_revisions(Path(cache_dir)):
            if self._has_commit(found.repo_id, found.commit) or not found.snapshot.is_dir():
                continue  # the second test narrows a race with a deletion that removed its files
            record, created = self.add(found.repo_id, revision=found.revision, status="ready", **found.fields())
            if created:
                adopted.append(record)
        return adopted

    def cache_fingerprint(self, cache_dir: Path) -> str | None:
        """The fingerprint recorded by the last adoption from `cache_dir`."""
        with self._session() as session:
            return session.scalar(select(CacheScan.fingerprint).where(CacheScan.cache_dir == str(cache_dir)))

    def record_cache_fingerprint(self, cache_dir: Path, fingerprint: str) -> None:
        try:
            with self._session() as session, session.begin():
                session.merge(CacheScan(cache_dir=str(cache_dir), fingerprint=fingerprint))
        except IntegrityError:  # another process recorded its scan first; either is as good
            pass

    def record_action(self, user: str, action: str, record: ModelRecord | None = None) -> AuditEntry:
        """Add an audit entry: `user` did `action` (to `record`'s entry, when it names one)."""
        entry = AuditEntry(
            user=user,
            action=validate_choice("action", action, AUDIT_ACTIONS),
            model_id=record.id if record else None,
            repo_id=record.repo_id if record else None,
            revision=record.revision if record else None,
        )
        with self._session() as session, session.begin():
            session.add(entry)
        return entry

    def audit(self, *, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        """Audit entries, newest first."""
        check_counts(limit=limit, offset=offset)
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
        with self._session() as session:
            return list(session.scalars(query))

    def _has_commit(self, repo_id: str, commit: str) -> bool:
        query = select(ModelRecord.id).where(ModelRecord.repo_id == repo_id, ModelRecord.commit == commit)
        with self._session() as session:
            return session.scalars(query).first() is not None


def _fetch_all(connection: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of `statement` as the database driver returns them: for a listing of 10,000 entries,
    SQLAlchemy's row objects and type conversions cost more than the query itself."""
    compiled = statement.compile(connection, compile_kwargs={"render_postcompile": True})
    params: Any = compiled.params
    if compiled.positional:
        params = [params[name] for name in compiled.positiontup or ()]
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), params)
        return cursor.fetchall()  # type: ignore[no-any-return]
    finally:
        cursor.close()


def _listing(
    query: Select[Any],
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
) -> Select[Any]:
    """`query` narrowed to the entries matching every filter, sorted, limited and offset."""
    check_counts(min_params=min_params, max_params=max_params, limit=limit, offset=offset)
    if family:
        query = query.where(ModelRecord.family == family)
    if quantization:
        query = query.where(ModelRecord.quantization == validate_choice("quantization", quantization, QUANTIZATIONS))
    if status:
        query = query.where(ModelRecord.status == validate_choice("status", status, STATUSES))
    if min_params is not None:
        query = query.where(ModelRecord.params >= min_params)
    if max_params is not None:
        query = query.where(ModelRecord.params <= max_params)
    if repo_id:
        query = query.where(ModelRecord.repo_id == repo_id)
    if q:
        pattern = like_pattern(q)
        query = query.where(
            or_(ModelRecord.name.ilike(pattern, escape="\\"), ModelRecord.repo_id.ilike(pattern, escape="\\"))
        )
    query = query.order_by(*_sort_columns(sort))
    if limit is not None:
        query = query.limit(limit)
    query = query.offset(offset)
    return query


def _sort_columns(sort: str) -> Iterator[Any]:
    field, descending = sort_order(sort)
    column = getattr(ModelRecord, field)
    # Entries without a value come first in ascending order, last in descending, on every backend.
    yield column.desc().nulls_last() if descending else column.asc().nulls_first()
    yield ModelRecord.id
