"""Download workers as the catalog records them: which one is alive, and how a job is stopped.

Standard library only, and written against any catalog with the few methods of `JobCatalog`, so that
`mistudio cancel` can stop a job without importing the download engine or SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Protocol

from .errors import Conflict
from .options import ACTIVE_STATUSES
from .records import Entries, RecordView, utcnow

WORKER_MODULE = "mistudio_jupyter.core.downloads.worker"
STOP_POLL_S = 0.025
CANCEL_WAIT_S = 5.0


class JobCatalog(Entries, Protocol):
    """What stopping and refreshing jobs needs of a catalog."""

    def update(self, model_id: str, **fields: Any) -> Any: ...

    def request_cancel(self, model_id: str) -> Any: ...

    def mark_stopped(self, model_id: str, worker: str, status: str) -> bool: ...


def worker_name(pid: int | None = None) -> str:
    """How a worker is recorded in the catalog: `host:pid`."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def local_worker_pid(record: RecordView) -> int | None:
    """The pid of the record's worker when that worker runs on this host."""
    host, _, pid = (record.worker or "").rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def worker_alive(record: RecordView, heartbeat_timeout_s: float) -> bool:
    """Whether the record's worker still runs: its process on this host, else a fresh heartbeat."""
    if not record.worker:
        return False
    pid = local_worker_pid(record)
    if pid is not None:
        return _is_worker_process(pid)
    beat = record.heartbeat_at
    if beat is None:
        return False
    if beat.tzinfo is None:  # SQLite drops the zone; every stored time is UTC
        beat = beat.replace(tzinfo=dt.timezone.utc)
    return (utcnow() - beat).total_seconds() < heartbeat_timeout_s


def _is_worker_process(pid: int) -> bool:
    proc = Path("/proc")
    if proc.is_dir():
        # The command line also rules out a reused pid. It is empty for a zombie, and also for a moment
        # after the parent's Popen returned while the worker is still being exec'd: the state tells.
        try:
            cmdline = (proc / str(pid) / "cmdline").read_bytes()
            if cmdline:
                return WORKER_MODULE.encode() in cmdline
            return (proc / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(record: RecordView, heartbeat_timeout_s: float) -> bool:
    return record.status in ACTIVE_STATUSES and worker_alive(record, heartbeat_timeout_s)


def refresh(catalog: JobCatalog, record: Any, heartbeat_timeout_s: float) -> Any:
    """The record, turned `interrupted` (or `cancelled`, when asked) if its worker is gone."""
    if record.status not in ACTIVE_STATUSES or not record.worker:
        return record
    if worker_alive(record, heartbeat_timeout_s):
        return record
    status = "cancelled" if record.cancel_requested else "interrupted"
    # `record` may be stale: the worker may have written its final status and exited since.
    catalog.mark_stopped(record.id, record.worker, status)
    return catalog.get(record.id)


def refresh_all(catalog: JobCatalog, heartbeat_timeout_s: float) -> None:
    """Refresh every entry that claims to be downloading or queued."""
    for status in ACTIVE_STATUSES:
        for record in catalog.list(status=status):
            refresh(catalog, record, heartbeat_timeout_s)


def stop(catalog: JobCatalog, model_id: str, heartbeat_timeout_s: float) -> Any:
    """Stop the job of `model_id` from any process: the catalog flag, plus SIGTERM when local.

    Waits up to CANCEL_WAIT_S for the worker to stop; an entry with no running job becomes `cancelled`.
    """
    record = refresh(catalog, catalog.get(model_id), heartbeat_timeout_s)
    if record.status == "ready":
        raise Conflict(f"{record.name} is already downloaded; delete it instead")
    if running(record, heartbeat_timeout_s):
        catalog.request_cancel(model_id)
        pid = local_worker_pid(record)
        if pid is not None:
            signal_worker(pid)
        return _await_stop(catalog, model_id, heartbeat_timeout_s)
    if record.status != "cancelled":
        return catalog.update(model_id, status="cancelled", speed_bps=None, eta_s=None)
    return record


def _await_stop(catalog: JobCatalog, model_id: str, heartbeat_timeout_s: float) -> Any:
    deadline = time.monotonic() + CANCEL_WAIT_S
    record = catalog.get(model_id)
    while running(record, heartbeat_timeout_s) and time.monotonic() < deadline:
        time.sleep(STOP_POLL_S)
        record = catalog.get(model_id)
    return refresh(catalog, record, heartbeat_timeout_s)


def signal_worker(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
