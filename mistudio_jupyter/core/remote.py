"""The team store's client: the store interface (`core.store.ModelStore`) over the store's REST API.

Users' servers, kernels and CLI use it when `MISTUDIO_STORE_URL` is set. Every catalog and download
operation is a request to the store, authenticated with the user's JupyterHub token; the store's error
answers become the same domain errors a local catalog raises. Progress is followed by polling the
store's listing (one request per beat of this process's poller, however many handles and views watch).
Model files are read from the store's cache mounted here read-only (`Settings.cache_dir`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx2

from .changes import CatalogChanges, CatalogPoller
from .downloads.cache import RepoCache
from .downloads.manager import DownloadHandle
from .errors import InvalidArgument, MiStudioError, NotFound, StoreUnreachable, error_from
from .leases import Leases, process_description
from .options import ACTIVE_STATUSES, LoadChoice
from .records import RecordView, valid_id
from .settings import Settings
from .store import DownloadRequest, valid_entry

API_PATH = "/mistudio/api/v1"
MAX_LISTING = 10_000  # the most entries one `GET /models` returns
STORE_WORKER = "store"  # stands for the store's worker on an entry it is downloading


class RemoteRecord(RecordView):
    """A catalog entry as the store's REST API gave it, with its snapshot path in the local mount."""

    def __init__(self, data: dict[str, Any], cache_dir: Path) -> None:
        self._data = data
        for key, value in data.items():
            setattr(self, key, value)
        error = data.get("error") or {}
        self.error_code, self.error_message = error.get("code"), error.get("message")
        self.created_at = _time(data.get("created_at"))
        self.updated_at = _time(data.get("updated_at"))
        self.architecture = None  # built from the config in the mounted cache when asked for
        self.worker = STORE_WORKER if self.status in ACTIVE_STATUSES else None
        self.heartbeat_at, self.cancel_requested = None, False
        self.file_path = _local_snapshot(data, cache_dir)

    def to_dict(self) -> dict[str, Any]:
        return {**self._data, "file_path": self.file_path}


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _local_snapshot(data: dict[str, Any], cache_dir: Path) -> str | None:
    """Where a ready entry's snapshot is in this machine's mount of the store's cache."""
    if data.get("status") != "ready" or not data.get("commit"):
        return None
    try:
        return str(RepoCache(cache_dir, data["repo_id"]).snapshot(data["commit"]))
    except MiStudioError:
        return None


class RemoteChangeTracker:
    """What changed in the store's catalog since the previous look, from one listing per look."""

    def __init__(self, store: RemoteStore) -> None:
        self._store = store
        self._versions: dict[str, dt.datetime | None] = {}

    def look(self) -> CatalogChanges:
        records = self.everything()
        versions = {record.id: record.updated_at for record in records}
        deleted = [model_id for model_id in self._versions if model_id not in versions]
        changed = [record for record in records if self._versions.get(record.id) != record.updated_at]
        self._versions = versions
        return CatalogChanges(changed, deleted)  # type: ignore[arg-type]

    def everything(self) -> list[RemoteRecord]:
        return self._store.list(sort="updated_at", limit=MAX_LISTING)

    def close(self) -> None:
        """Nothing is held between looks."""


class RemoteLease:
    """A lease as the store answers it."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self.id: str = data.get("id", "")
        self.holder: str = data["holder"]
        self.created_at = dt.datetime.fromisoformat(data["created_at"])

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


class RemoteLeases(Leases):
    """The store's leases, taken over its REST API: the store names the holder by the user's name."""

    def __init__(self, store: RemoteStore, timeout_s: float) -> None:
        self._store = store
        self.timeout_s = timeout_s

    def holder(self) -> str:
        return process_description()

    def acquire(self, model_id: str, holder: str) -> RemoteLease:
        return RemoteLease(self._store._call("POST", f"/models/{model_id}/leases", body={"holder": holder}))

    def renew(self, lease_id: str) -> RemoteLease:
        return RemoteLease(self._store._call("PUT", f"/leases/{valid_id(lease_id)}", body={}))

    def release(self, lease_id: str) -> None:
        self._store._call("DELETE", f"/leases/{valid_id(lease_id)}")

    def live(self, model_id: str) -> list[RemoteLease]:  # type: ignore[override]
        leases = self._store._call("GET", f"/models/{model_id}").get("leases", [])
        return [RemoteLease(lease) for lease in leases]


class RemoteStore:
    """A team store reached over its REST API (`{store_url}/mistudio/api/v1`) with the user's token."""

    def __init__(self, settings: Settings) -> None:
        assert settings.store_url and settings.store_token
        self.settings = settings
        self._base = settings.store_url.rstrip("/") + API_PATH
        self._client = httpx2.Client(
            headers={"Authorization": f"token {settings.store_token}"},
            timeout=httpx2.Timeout(60.0, connect=10.0),
        )
        self._listed: dict[str, RemoteRecord] = {}
        self.changes = CatalogPoller(RemoteChangeTracker(self))
        self.leases = RemoteLeases(self, settings.heartbeat_timeout_s)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, *, body: dict[str, Any] | None = None, **query: Any) -> Any:
        """The JSON answer of one request; the store's error answer as its domain error."""
        params = {name: _query_value(value) for name, value in query.items() if value is not None}
        try:
            response = self._client.request(method, self._base + path, json=body, params=params)
        except httpx2.TransportError as error:
            raise StoreUnreachable(f"the team store at {self.settings.store_url} did not answer ({error})") from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) and response.status_code >= 400 else None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            raise error_from(error["code"], str(error.get("message", "")))
        if response.status_code >= 400 or payload is None:
            raise StoreUnreachable(
                f"the team store at {self.settings.store_url} answered {method} {path} with HTTP "
                f"{response.status_code} and no mistudio answer; is MISTUDIO_STORE_URL the store's root "
                "(…/services/mistudio/)?"
            )
        return payload

    def _record(self, data: dict[str, Any]) -> RemoteRecord:
        return RemoteRecord(data, self.settings.cache_dir)

    # -- catalog -------------------------------------------------------------------------------

    def get(self, model_id: str) -> RemoteRecord:
        return self._record(self._call("GET", f"/models/{valid_id(model_id)}"))

    entry = get

    def get_many(self, model_ids: list[str]) -> list[RemoteRecord]:
        """The entries with these ids: as the last listing gave them (a caller asks right after one, for
        the versions it listed), else each asked for."""
        listed, records = self._listed, []
        for model_id in model_ids:
            try:
                records.append(listed.get(model_id) or self.get(model_id))
            except NotFound:
                continue
        return records

    def list(self, **filters: Any) -> list[RemoteRecord]:
        records = [self._record(data) for data in self._call("GET", "/models", **filters)["models"]]
        self._listed = {record.id: record for record in records}
        return records

    def list_versions(self, **filters: Any) -> list[tuple[str, dt.datetime]]:
        return [(record.id, record.updated_at) for record in self.list(**filters)]  # type: ignore[misc]

    def resolve(self, repo_or_id: str) -> RemoteRecord | None:
        record = self._by_id(repo_or_id) if "/" not in repo_or_id else None
        if record is not None:
            return record
        matches = self.list(q=repo_or_id, sort="-updated_at", limit=MAX_LISTING)
        return next((record for record in matches if record.repo_id == repo_or_id), None)

    def adopt_cache(self, *, if_changed: bool = False) -> list[RemoteRecord]:
        return []  # the store adopts what appears in its cache

    def add(self, repo_id: str, revision: str, choice: LoadChoice, **entry: Any) -> RemoteRecord:
        entry.pop("requested_by", None)  # the store names the user its token belongs to
        body = {"repo_id": repo_id, "revision": revision, **{k: v for k, v in entry.items() if v is not None}}
        return self._record(self._call("POST", "/models", body=body))

    # -- downloads -----------------------------------------------------------------------------

    def download(self, repo_or_id: str, request: DownloadRequest) -> DownloadHandle:
        record = self._by_id(repo_or_id) if "/" not in repo_or_id else None
        if record is None:
            revision, choice = valid_entry(
                repo_or_id, request.revision, request.option, request.quantization, request.dtype
            )
            options = {"option": request.option, "quantization": request.quantization, "dtype": request.dtype}
            record = self.add(repo_or_id, revision, choice, **options, token=request.token)
        body = {"allow_pickle": request.allow_pickle, "allow_remote_code": request.allow_remote_code}
        self._call("POST", f"/models/{record.id}/download", body=_with_token(body, request.token))
        return DownloadHandle(self, record.id, None, request.on_progress)

    def _by_id(self, model_id: str) -> RemoteRecord | None:
        try:
            return self.get(model_id)
        except (NotFound, InvalidArgument):
            return None

    def resume(self, model_id: str, *, token: str | None = None) -> DownloadHandle:
        self._call("POST", f"/models/{model_id}/resume", body=_with_token({}, token))
        return DownloadHandle(self, model_id, None)

    def join(self, record: RecordView) -> DownloadHandle:
        return DownloadHandle(self, record.id, None)  # type: ignore[attr-defined]

    def refresh(self, record: RecordView) -> RecordView:
        return record  # the store refreshes what it answers

    def cancel(self, model_id: str, *, discard: bool = False) -> RemoteRecord:
        return self._record(self._call("POST", f"/models/{model_id}/cancel", body={"discard": discard}))

    def delete(self, model_id: str, *, force: bool = False) -> dict[str, Any]:
        return self._call("DELETE", f"/models/{model_id}", force=force or None)  # type: ignore[no-any-return]

    def record_action(self, user: str, action: str, record: RecordView | None = None) -> None:
        """The store records what each user does through it."""

    def record_load(self, model_id: str, measured_memory_bytes: int | None, load_time_s: float | None) -> None:
        """A load here is not written back to the store's catalog."""

    def audit(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", "/audit", limit=limit, offset=offset)["entries"]  # type: ignore[no-any-return]

    def permissions(self) -> list[str]:
        return [str(permission) for permission in self._call("GET", "/me")["can"]]

    def cache_info(self) -> dict[str, Any]:
        return self._call("GET", "/cache")  # type: ignore[no-any-return]

    def prune_cache(self) -> dict[str, Any]:
        return self._call("POST", "/cache/prune", body={})  # type: ignore[no-any-return]


def _with_token(body: dict[str, Any], token: str | None) -> dict[str, Any]:
    """A token is sent to the store only when the caller gave one for this request."""
    return {**body, "token": token} if token else body


def _query_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
