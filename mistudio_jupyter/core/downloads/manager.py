"""Download jobs, coordinated through the catalog: start, join, watch, cancel, delete, sweep.

Each job runs in a child process (`python -m mistudio_jupyter.core.downloads.worker ID`). The
parent claims the catalog row before it starts the child, then hands the claim to the child's
`host:pid`, so of racing requests for one entry exactly one starts a process and the others join it. The token and
options reach the child on its stdin, never in argv or the catalog.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, Protocol

from .. import jobs
from ..catalog import ACTIVE, Catalog, ModelRecord
from ..changes import CatalogChanges, CatalogPoller
from ..errors import ALL_ERRORS, Cancelled, Conflict, DownloadFailed, MiStudioError, NotFound
from ..hub import FilePlan, HubClient
from ..jobs import WORKER_MODULE, worker_name
from ..settings import Settings
from .cache import (
    RepoCache,
    delete_revision,
    free_bytes,
    repo_caches,
    scan_cache,
    size_if_present,
    sweep_partials,
)
from .worker import EXIT_LOST

POLL_S = 0.2  # how often a handle hears from the catalog poller

ProgressCallback = Callable[[ModelRecord], None]


def error_for(record: ModelRecord) -> MiStudioError:
    """The domain error that explains why a finished job is not ready."""
    if record.status == "cancelled":
        return Cancelled(f"the download of {record.name} was cancelled; resume continues from the bytes on disk")
    if record.status == "interrupted":
        return DownloadFailed(f"the download worker of {record.name} stopped; resume continues from the bytes on disk")
    by_code = {error.code: error for error in ALL_ERRORS}
    return by_code.get(record.error_code or "", DownloadFailed)(record.error_message or f"{record.name} failed")


class Jobs(Protocol):
    """What a download handle needs of whoever runs the job: this process's `DownloadManager`, or the
    team store's client (`core.remote.RemoteStore`)."""

    changes: CatalogPoller

    def entry(self, model_id: str) -> ModelRecord: ...

    def refresh(self, record: ModelRecord) -> ModelRecord: ...

    def cancel(self, model_id: str, *, discard: bool = False) -> ModelRecord: ...


class DownloadHandle:
    """A running (or finished) download job of one catalog entry.

    It subscribes to the catalog poller of its manager, calls the progress callbacks on every change
    and reaps the child process (when the job runs here); `wait()` returns the ready record or raises
    the job's error.
    """

    def __init__(
        self,
        manager: Jobs,
        model_id: str,
        process: subprocess.Popen[bytes] | None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.model_id = model_id
        self._manager = manager
        self._process = process
        self._callbacks: list[ProgressCallback] = [on_progress] if on_progress else []
        self._done = threading.Event()
        self._final: ModelRecord | None = None
        self._last: ModelRecord | None = None
        manager.changes.subscribe(self._on_changes, POLL_S)
        if process is not None:
            threading.Thread(target=self._on_exit, args=(process,), name="mistudio-reaper", daemon=True).start()

    @property
    def record(self) -> ModelRecord:
        """The entry as the catalog has it now."""
        return self._manager.entry(self.model_id)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def on_progress(self, callback: ProgressCallback) -> None:
        """Call `callback(record)` on every progress or status change from now on."""
        self._callbacks.append(callback)

    def wait(self, timeout: float | None = None) -> ModelRecord:
        """Block until the job ends; the ready record, else the job's error (Cancelled, ...).

        Raises TimeoutError when `timeout` seconds pass first.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"the download of {self.model_id} is still running after {timeout} s")
        assert self._final is not None
        if self._final.status != "ready":
            raise error_for(self._final)
        return self._final

    def cancel(self, discard: bool = False) -> ModelRecord:
        """Stop the job (within a second) and keep, or with `discard` remove, its partial files."""
        return self._manager.cancel(self.model_id, discard=discard)

    def _on_changes(self, changes: CatalogChanges) -> None:
        """One beat of the poller: take this entry's change, if any, and see whether the job ended."""
        if self._done.is_set():
            return
        if self.model_id in changes.deleted:
            self._finish(None)
            return
        record = next((record for record in changes.changed if record.id == self.model_id), None)
        if record is None and self._last is None:
            try:
                record = self._manager.entry(self.model_id)
            except NotFound:
                self._finish(None)
                return
        if record is not None:
            self._notify(record)
        self._check_finished()

    def _on_exit(self, process: subprocess.Popen[bytes]) -> None:
        """The job ends when its worker exits: look at once rather than at the poller's next beat."""
        process.wait()
        self._manager.changes.deliver_now(self._on_changes)

    def _check_finished(self) -> None:
        record = self._last
        if self._process is not None:
            if self._process.poll() is None:
                if record is None or record.status in ACTIVE:
                    return
                self._notify(record)  # final while its worker runs on: a ready entry's summary comes after
                self._finish(record)
                return
            lost = self._process.returncode == EXIT_LOST
            self._process = None
            if lost:
                return
            record = None  # its last write may have come after this beat's look: read the row again
        try:
            record = self._manager.refresh(record or self._manager.entry(self.model_id))
        except NotFound:
            self._finish(None)
            return
        if record.status in ACTIVE and record.worker:
            return
        self._notify(record)
        self._finish(record)

    def _finish(self, record: ModelRecord | None) -> None:
        if record is None:
            record = ModelRecord(
                id=self.model_id,
                name=self.model_id,
                status="failed",
                error_code=NotFound.code,
                error_message=f"model {self.model_id} was deleted from the catalog",
            )
        self._final = record
        self._manager.changes.unsubscribe(self._on_changes)
        self._done.set()

    def _notify(self, record: ModelRecord) -> None:
        last, self._last = self._last, record
        if last is not None and _progress_state(last) == _progress_state(record):
            return
        for callback in list(self._callbacks):
            callback(record)


def _plans(plan: FilePlan, record: ModelRecord) -> bool:
    """Whether `plan` is of `record`'s repo and revision."""
    return plan.repo_id == record.repo_id and plan.revision == (record.revision or "main")


def _progress_state(record: ModelRecord) -> tuple[Any, ...]:
    return record.status, record.bytes_done, record.bytes_total, record.current_file, record.updated_at


class DownloadManager:
    """Starts and controls download jobs; every decision goes through the catalog."""

    def __init__(self, settings: Settings, catalog: Catalog, hub: HubClient, changes: CatalogPoller) -> None:
        self.settings = settings
        self.catalog = catalog
        self.hub = hub
        self.changes = changes
        self._standby: subprocess.Popen[bytes] | None = None  # a worker loading ahead of its job
        self._lock = threading.Lock()
        self._starts: dict[Hashable, threading.Lock] = {}

    @contextlib.contextmanager
    def starting(self, key: Hashable) -> Iterator[None]:
        """Hold the start of the download `key` names: racing starts in this process take turns, so a
        burst of requests asks the Hub once and the rest join the job. A worker `warm_up` started and no
        download took is stopped on the way out."""
        with self._lock:
            turn = self._starts.setdefault(key, threading.Lock())
        try:
            with turn:
                yield
        finally:
            self._dismiss_standby()

    def warm_up(self) -> None:
        """Start a worker process now for the download about to start: it loads while the Hub is asked,
        which takes longer. At most one waits."""
        with self._lock:
            if self._standby is not None and self._standby.poll() is None:
                return
            with contextlib.suppress(OSError, DownloadFailed):  # the download spawns its own then
                self._standby = self._spawn(None)

    def _take_standby(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            process, self._standby = self._standby, None
        return process if process is not None and process.poll() is None else None

    def _dismiss_standby(self) -> None:
        process = self._take_standby()
        if process is not None:
            threading.Thread(target=_abandon, args=(process,), name="mistudio-dismiss", daemon=True).start()

    def start(
        self,
        record: ModelRecord,
        *,
        token: str | None = None,
        plan: FilePlan | None = None,
        allow_pickle: bool = False,
        allow_remote_code: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> DownloadHandle:
        """Download `record`'s revision, or join the job already downloading it. A `plan` of that
        revision just made saves the worker from asking the Hub again."""
        record = self.refresh(record)
        if self._running(record) or self._complete(record):
            return DownloadHandle(self, record.id, None, on_progress)
        request = {
            "settings": self._settings_json(),
            "token": self.hub.resolve_token(token),
            "allow_pickle": allow_pickle,
            "allow_remote_code": allow_remote_code,
            "plan": plan.to_json() if plan is not None and _plans(plan, record) else None,
            "hub_answer_s": self.hub.answer_s,
            "model_id": record.id,
            "log": str(log_dir(self.settings) / f"{record.id}.log"),
        }
        # Claim first, spawn once: of racing requests only the one that wins the row starts a process.
        reservation = f"{socket.gethostname()}:starting-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if not self.catalog.claim(record.id, reservation, stale_after_s=self.settings.heartbeat_timeout_s):
            return DownloadHandle(self, record.id, None, on_progress)
        process = self._spawn_claimed(record.id, reservation)
        if process is None:
            return DownloadHandle(self, record.id, None, on_progress)
        assert process.stdin is not None
        process.stdin.write(json.dumps(request).encode())
        process.stdin.close()
        return DownloadHandle(self, record.id, process, on_progress)

    def _spawn_claimed(self, model_id: str, reservation: str) -> subprocess.Popen[bytes] | None:
        """Start the worker of a row claimed as `reservation` and hand the claim to it; None when the
        row was deleted or taken over meanwhile (the child is stopped before it does anything)."""
        try:
            process = self._take_standby() or self._spawn(model_id)
        except (OSError, DownloadFailed) as error:
            failure = (
                error
                if isinstance(error, DownloadFailed)
                else DownloadFailed(f"cannot start a download worker: {error.strerror}")
            )
            self.catalog.heartbeat(
                model_id, reservation, status="failed", error_code=failure.code, error_message=failure.message
            )
            raise failure from None
        if not self.catalog.hand_over(model_id, reservation, worker_name(process.pid)):
            _abandon(process)
            return None
        return process

    def entry(self, model_id: str) -> ModelRecord:
        """The catalog entry `model_id` as it is now."""
        return self.catalog.get(model_id)

    def cancel(self, model_id: str, *, discard: bool = False) -> ModelRecord:
        """Stop the job of `model_id` from any process: the catalog flag, plus SIGTERM when local."""
        record = jobs.stop(self.catalog, model_id, self.settings.heartbeat_timeout_s)
        if discard and not self._running(record):
            self._sweep([record.repo_id])
        return record

    def refresh(self, record: ModelRecord) -> ModelRecord:
        """The record, turned `interrupted` (or `cancelled`, when asked) if its worker is gone."""
        return jobs.refresh(self.catalog, record, self.settings.heartbeat_timeout_s)

    def refresh_all(self) -> None:
        """Refresh every entry that claims to be downloading or queued."""
        jobs.refresh_all(self.catalog, self.settings.heartbeat_timeout_s)

    def delete(self, model_id: str) -> dict[str, Any]:
        """Remove an entry and the cached files no other entry uses; returns {id, freed_bytes}."""
        record = self.refresh(self.catalog.get(model_id))
        if self._running(record):
            raise Conflict(f"{record.name} is downloading; cancel it before deleting it")
        others = [other for other in self.catalog.list(repo_id=record.repo_id) if other.id != record.id]
        freed = 0
        if record.commit and not any(other.commit == record.commit for other in others):
            freed += delete_revision(self.settings.cache_dir, record.repo_id, record.commit)
        if not others:
            freed += self._sweep([record.repo_id])[1]
        self.catalog.delete(model_id)
        return {"id": model_id, "freed_bytes": freed}

    def prune(self) -> dict[str, Any]:
        """Remove orphaned partial files (ours and huggingface_hub's) of repos with no running job."""
        self.refresh_all()
        busy = {record.repo_id for status in ACTIVE for record in self.catalog.list(status=status) if record.worker}
        idle = [repo for repo in repo_caches(self.settings.cache_dir) if repo.repo_id not in busy]
        removed, freed = sweep_partials(idle)
        return {"removed": removed, "freed_bytes": freed}

    def cache_info(self) -> dict[str, Any]:
        """Size of the model cache, its partial files and the free space on its volume."""
        cache_dir = self.settings.cache_dir
        repos = list(repo_caches(cache_dir))
        partials = [path for repo in repos for path, _ in repo.partials()]
        size = 0
        if repos:
            size = sum(repo.size_on_disk for repo in scan_cache(cache_dir).repos if repo.repo_type == "model")
        return {
            "cache_dir": str(cache_dir),
            "repos": len(repos),
            "size_bytes": size,
            "partial_files": len(partials),
            "partial_bytes": sum(size_if_present(path) or 0 for path in partials),
            "free_bytes": free_bytes(cache_dir),
        }

    def _running(self, record: ModelRecord) -> bool:
        return jobs.running(record, self.settings.heartbeat_timeout_s)

    def _complete(self, record: ModelRecord) -> bool:
        return record.status == "ready" and bool(record.file_path) and Path(record.file_path or "").is_dir()

    def _sweep(self, repo_ids: list[str]) -> tuple[list[str], int]:
        return sweep_partials(RepoCache(self.settings.cache_dir, repo_id) for repo_id in repo_ids)

    def _settings_json(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "cache_dir": str(settings.cache_dir),
            "db_url": settings.db_url,
            "hub_endpoint": settings.hub_endpoint,
            "max_parallel_downloads": settings.max_parallel_downloads,
            "max_connections": settings.max_connections,
            "heartbeat_timeout_s": settings.heartbeat_timeout_s,
            "disk_margin_bytes": settings.disk_margin_bytes,
        }

    def _spawn(self, model_id: str | None) -> subprocess.Popen[bytes]:
        """A worker for `model_id`, or (None) one that learns its job from its request and logs to
        `standby.log` until then."""
        log_path = log_dir(self.settings) / f"{model_id or 'standby'}.log"
        descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with open(descriptor, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, *([model_id] if model_id else [])],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                close_fds=True,
                start_new_session=True,  # survives the CLI (--detach) and the terminal's Ctrl-C
                env={**os.environ, "HF_ENDPOINT": self.settings.hub_endpoint},
            )


def log_dir(settings: Settings) -> Path:
    """Where download workers write their logs: `{runtime_dir}/mistudio/downloads`, private (0700).

    A folder there that is a link, or belongs to another user, is refused rather than written into.
    """
    path = settings.runtime_dir / "mistudio" / "downloads"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        raise DownloadFailed(
            "the download log folder in the Jupyter runtime dir is a link or belongs to another "
            "user; remove it or set JUPYTER_RUNTIME_DIR"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def _abandon(process: subprocess.Popen[bytes]) -> None:
    """Stop a child that lost the claim before it was told anything."""
    assert process.stdin is not None
    process.stdin.close()
    process.wait()
