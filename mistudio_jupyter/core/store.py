"""Where the catalog and the downloads live: the one store interface `ModelManager` delegates to.

`LocalStore` is this process's catalog (SQLite or PostgreSQL) and download jobs in child processes: the
single-user mode, and the team store service itself. `core.remote.RemoteStore` is a client of a team
store over its REST API, for users' servers, kernels and CLI when `MISTUDIO_STORE_URL` is set. Front
ends call `ModelManager` and never learn which one is behind it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .adoption import cache_fingerprint
from .catalog import Catalog, ModelRecord
from .changes import CatalogPoller, change_tracker
from .errors import NotFound
from .hub import validate_repo_id, validate_revision
from .leases import LeaseBook, Leases
from .options import LoadChoice, entry_choice
from .records import RecordView, resolve, valid_id

# What a user may do with a catalog (a team store's custom:mistudio:<name> scopes; everything in single-user mode).
READ, DOWNLOAD, DELETE, ADMIN = "read", "download", "delete", "admin"
PERMISSIONS = (READ, DOWNLOAD, DELETE, ADMIN)

if TYPE_CHECKING:
    from .downloads.manager import DownloadHandle, DownloadManager
    from .hub import HubClient
    from .settings import Settings


class ModelStore(Protocol):
    """The catalog and download operations, wherever they run. Arguments are validated by the caller."""

    changes: CatalogPoller
    leases: Leases

    def get(self, model_id: str) -> RecordView: ...

    def get_many(self, model_ids: list[str]) -> list[RecordView]: ...

    def list(self, **filters: Any) -> list[RecordView]: ...

    def list_versions(self, **filters: Any) -> list[tuple[str, dt.datetime]]: ...

    def resolve(self, repo_or_id: str) -> RecordView | None: ...

    def adopt_cache(self, *, if_changed: bool = False) -> list[RecordView]: ...

    def add(self, repo_id: str, revision: str, choice: LoadChoice, **options: Any) -> RecordView: ...

    def download(self, repo_or_id: str, request: DownloadRequest) -> DownloadHandle: ...

    def resume(self, model_id: str, *, token: str | None = None) -> DownloadHandle: ...

    def join(self, record: RecordView) -> DownloadHandle: ...

    def refresh(self, record: RecordView) -> RecordView: ...

    def cancel(self, model_id: str, *, discard: bool = False) -> RecordView: ...

    def delete(self, model_id: str, *, force: bool = False) -> dict[str, Any]: ...

    def record_action(self, user: str, action: str, record: RecordView | None = None) -> None: ...

    def record_load(self, model_id: str, measured_memory_bytes: int | None, load_time_s: float | None) -> None: ...

    def audit(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]: ...

    def permissions(self) -> list[str]: ...

    def cache_info(self) -> dict[str, Any]: ...

    def prune_cache(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class DownloadRequest:
    """What `ModelManager.download` was asked, apart from the repo or id."""

    revision: str | None = None
    option: str | None = None
    quantization: str | None = None
    dtype: str | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    allow_pickle: bool = False
    allow_remote_code: bool = False
    on_progress: Any = None
    requested_by: str | None = None


class LocalStore:
    """The catalog in this process's database and downloads in its child processes."""

    def __init__(self, settings: Settings, hub: HubClient) -> None:
        self.settings = settings
        self.hub = hub
        self.catalog = Catalog(settings.db_url)
        self._downloads: DownloadManager | None = None
        self._adoption_lock = threading.Lock()
        self._adopted_fingerprint: str | None = None
        self.changes = CatalogPoller(change_tracker(self))
        self.leases = LeaseBook(self.catalog, settings.heartbeat_timeout_s)

    @property
    def downloads(self) -> DownloadManager:
        """The download jobs of this catalog (started lazily)."""
        if self._downloads is None:
            from .downloads.manager import DownloadManager

            self._downloads = DownloadManager(self.settings, self.catalog, self.hub, self.changes)
        return self._downloads

    def close(self) -> None:
        self.catalog.close()

    def get(self, model_id: str) -> ModelRecord:
        return self.downloads.refresh(self.catalog.get(valid_id(model_id)))

    def get_many(self, model_ids: list[str]) -> list[ModelRecord]:
        return self.catalog.get_many(model_ids)

    def list(self, **filters: Any) -> list[ModelRecord]:
        self._catch_up()
        return self.catalog.list(**filters)

    def list_versions(self, **filters: Any) -> list[tuple[str, dt.datetime]]:
        self._catch_up()
        return self.catalog.list_versions(**filters)

    def _catch_up(self) -> None:
        """Before a listing: entries whose download worker is gone become `interrupted`, and the models
        that appeared in the cache are adopted."""
        self.downloads.refresh_all()
        self.adopt_cache(if_changed=True)

    def resolve(self, repo_or_id: str) -> ModelRecord | None:
        return resolve(self.catalog, repo_or_id)

    def adopt_cache(self, *, if_changed: bool = False) -> list[ModelRecord]:
        cache_dir = self.settings.cache_dir
        with self._adoption_lock:
            fingerprint = cache_fingerprint(cache_dir)
            if if_changed and fingerprint == self._adopted_fingerprint:
                return []
            if if_changed and fingerprint == self.catalog.cache_fingerprint(cache_dir):
                self._adopted_fingerprint = fingerprint
                return []
            adopted = self.catalog.adopt(cache_dir)
            self.catalog.record_cache_fingerprint(cache_dir, fingerprint)
            self._adopted_fingerprint = fingerprint
            return adopted

    def add(
        self,
        repo_id: str,
        revision: str,
        choice: LoadChoice,
        *,
        name: str | None = None,
        token: str | None = None,
        requested_by: str | None = None,
        **_: Any,
    ) -> ModelRecord:
        existing = self.catalog.find(repo_id, revision, choice.quantization, choice.dtype)
        if existing is not None:
            return existing
        self.hub.model_info(repo_id, revision, token)
        record, _ = self.catalog.add(
            repo_id,
            revision=revision,
            quantization=choice.quantization,
            dtype=choice.dtype,
            name=name,
            requested_by=requested_by,
        )
        return record

    def download(self, repo_or_id: str, request: DownloadRequest) -> DownloadHandle:
        wanted = (repo_or_id, request.revision, request.option, request.quantization, request.dtype)
        revision = request.revision
        with self.downloads.starting(wanted):
            record = self._entry_by_id(repo_or_id)
            if record is None:
                # Most likely a new download: its worker starts loading now, while the entry is looked for
                # and the Hub is asked (and is dismissed if the entry is complete or already running).
                self.downloads.warm_up()
                revision, choice = valid_entry(*wanted)
                record = self.catalog.find(repo_or_id, revision, choice.quantization, choice.dtype)
            plan = None
            if record is None or _never_started(record):
                self.downloads.warm_up()
                source = (record.repo_id, record.revision) if record else (repo_or_id, revision)
                _, plan = self.hub.download_plan(*source, request.token)
            if record is not None and request.requested_by and not record.requested_by:
                record = self.catalog.update(record.id, requested_by=request.requested_by)
            if record is None:
                record, _ = self.catalog.add(
                    repo_or_id,
                    revision=revision,
                    quantization=choice.quantization,
                    dtype=choice.dtype,
                    requested_by=request.requested_by,
                )
            return self.downloads.start(
                record,
                token=request.token,
                plan=plan,
                allow_pickle=request.allow_pickle,
                allow_remote_code=request.allow_remote_code,
                on_progress=request.on_progress,
            )

    def _entry_by_id(self, repo_or_id: str) -> ModelRecord | None:
        if "/" in repo_or_id:
            return None
        try:
            return self.catalog.get(valid_id(repo_or_id))
        except NotFound:
            return None

    def resume(self, model_id: str, *, token: str | None = None) -> DownloadHandle:
        return self.downloads.start(self.get(model_id), token=token)

    def join(self, record: ModelRecord) -> DownloadHandle:
        return self.downloads.start(record)

    def refresh(self, record: ModelRecord) -> ModelRecord:
        return self.downloads.refresh(record)

    def cancel(self, model_id: str, *, discard: bool = False) -> ModelRecord:
        return self.downloads.cancel(valid_id(model_id), discard=discard)

    def delete(self, model_id: str, *, force: bool = False) -> dict[str, Any]:
        if not force:
            self.leases.refuse_delete(self.catalog.get(model_id))
        return self.downloads.delete(model_id)

    def record_action(self, user: str, action: str, record: RecordView | None = None) -> None:
        self.catalog.record_action(user, action, record)  # type: ignore[arg-type]

    def record_load(self, model_id: str, measured_memory_bytes: int | None, load_time_s: float | None) -> None:
        self.catalog.update(model_id, measured_memory_bytes=measured_memory_bytes, load_time_s=load_time_s)

    def audit(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in self.catalog.audit(limit=limit, offset=offset)]

    def permissions(self) -> list[str]:
        return list(PERMISSIONS)

    def cache_info(self) -> dict[str, Any]:
        return self.downloads.cache_info()

    def prune_cache(self) -> dict[str, Any]:
        return self.downloads.prune()


def _never_started(record: ModelRecord) -> bool:
    """A pending entry no download has claimed yet (a queued download is pending with a worker)."""
    return record.status == "pending" and not record.worker


def valid_entry(
    repo_id: str, revision: str | None, option: str | None, quantization: str | None, dtype: str | None
) -> tuple[str, LoadChoice]:
    """Check what names a new entry; returns the revision (default `main`) and how it will be loaded."""
    validate_repo_id(repo_id)
    validate_revision(revision or "main")
    return revision or "main", entry_choice(option, quantization, dtype)


def open_store(settings: Settings, hub: HubClient) -> ModelStore:
    """The team store's client when `settings.store_url` is set, else the local catalog and downloads."""
    if settings.store_url:
        from .remote import RemoteStore

        return RemoteStore(settings)
    return LocalStore(settings, hub)
