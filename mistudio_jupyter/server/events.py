"""Download and status events for the WebSocket, from one watcher over the catalog.

Every process that downloads (this server, a kernel, the CLI) writes its progress to the catalog, so
the server learns about all of them the same way: a single watcher looks at the catalog's changes
(`core.changes.ChangeTracker`: once a second when nothing moves, every 0.5 s while something
downloads) and turns changed and deleted rows into events. It runs only while at least one socket
is open.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Awaitable, Callable, Protocol, TypeVar

from ..core.changes import CatalogChanges, ChangeTracker
from ..core.service import ModelManager

ALL_MODELS = "models"
MAX_SUBSCRIPTIONS = 1000  # channels per socket: more than a catalog's worth of model channels
ACTIVE_INTERVAL_S = 0.5
IDLE_INTERVAL_S = 1.0
_GB = 1e9

T = TypeVar("T")
RunBlocking = Callable[[Callable[[], T]], Awaitable[T]]


class EventSink(Protocol):
    """An open socket as the hub sees it."""

    def send(self, message: dict[str, Any]) -> bool:
        """Queue a message; False when the socket is gone."""


def channel_of(model_id: str) -> str:
    return f"model/{model_id}"


def message(channel: str | None, event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"channel": channel, "event": event, "data": data}


def progress_data(record: dict[str, Any]) -> dict[str, Any]:
    """The `download_progress` payload of a record."""
    return {
        "progress": record["progress"],
        "downloaded_gb": round(record["bytes_done"] / _GB, 6),
        "bytes_done": record["bytes_done"],
        "bytes_total": record["bytes_total"],
        "speed_bps": record["speed_bps"],
        "eta_s": record["eta_s"],
        "current_file": record["current_file"],
    }


class EventHub:
    """The open sockets, their subscriptions, and the catalog watcher that feeds them."""

    def __init__(self, manager: ModelManager, run_blocking: RunBlocking[Any], log: logging.Logger) -> None:
        self._manager = manager
        self._run_blocking = run_blocking
        self._log = log
        self._subscriptions: dict[EventSink, set[str]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._status: dict[str, str] = {}
        self._downloading: dict[str, dict[str, Any]] = {}
        self._tracker: ChangeTracker | None = None

    # -- sockets -------------------------------------------------------------------------------

    def add(self, sink: EventSink) -> None:
        """Register an open socket (with no subscriptions yet) and start watching if needed."""
        self._subscriptions[sink] = set()
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch())

    def remove(self, sink: EventSink) -> None:
        """Forget a socket; the watcher stops with the last one."""
        self._subscriptions.pop(sink, None)
        if not self._subscriptions and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
            self._tracker = None  # the next watcher starts from the catalog as it is then

    def subscribe(self, sink: EventSink, channel: str) -> bool:
        """Add a channel to a socket's subscriptions; False when it already has MAX_SUBSCRIPTIONS."""
        channels = self._subscriptions.setdefault(sink, set())
        if channel not in channels and len(channels) >= MAX_SUBSCRIPTIONS:
            return False
        channels.add(channel)
        return True

    def unsubscribe(self, sink: EventSink, channel: str) -> None:
        self._subscriptions.get(sink, set()).discard(channel)

    def publish(self, model_id: str, event: str, data: dict[str, Any]) -> None:
        """Send an event to every socket subscribed to the model or to all models; drop dead ones."""
        channel = channel_of(model_id)
        payload = message(channel, event, data)
        dead = [sink for sink, channels in self._subscriptions.items()
                if (channel in channels or ALL_MODELS in channels) and not sink.send(payload)]
        for sink in dead:
            self._log.debug("dropping a closed event socket")
            self.remove(sink)

    def model_deleted(self, model_id: str) -> None:
        """Announce a deleted entry: at once when deleted through this server, else when the watcher
        finds it gone."""
        previous = self._status.pop(model_id, None)
        self._downloading.pop(model_id, None)
        self.publish(model_id, "status_changed", {"status": "deleted", "previous": previous, "record": None})

    def stop(self) -> None:
        """Stop the watcher (the server is shutting down)."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    # -- the catalog watcher -------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed poll (database busy, say) must not end the watcher
                self._log.warning("mistudio event watcher: poll failed", exc_info=True)
            await asyncio.sleep(ACTIVE_INTERVAL_S if self._downloading else IDLE_INTERVAL_S)

    async def poll(self) -> None:
        """Publish the events of every row changed or deleted since the last poll, and the progress
        of running downloads. The first poll only learns the catalog as it is."""
        first = self._tracker is None
        tracker = self._tracker = self._tracker or ChangeTracker(self._manager)
        changes: CatalogChanges = await self._run_blocking(tracker.look)
        records = [record.to_dict() for record in changes.changed]
        if first:
            self._status = {record["id"]: record["status"] for record in records}
            self._downloading = {record["id"]: record for record in records if record["status"] == "downloading"}
            return
        for record in records:
            self._on_change(record)
        for model_id in changes.deleted:
            if model_id in self._status:  # not yet announced by `model_deleted`
                self.model_deleted(model_id)
        changed_ids = {record["id"] for record in records}
        stale_before = time.time() - self._manager.settings.heartbeat_timeout_s
        for model_id, record in list(self._downloading.items()):
            if model_id not in changed_ids and dt.datetime.fromisoformat(record["updated_at"]).timestamp() >= stale_before:
                self.publish(model_id, "download_progress", progress_data(record))

    def _on_change(self, record: dict[str, Any]) -> None:
        model_id, status = record["id"], record["status"]
        previous = self._status.get(model_id)
        self._status[model_id] = status
        if status == "downloading":
            self._downloading[model_id] = record
        else:
            self._downloading.pop(model_id, None)
        if previous != status:
            self.publish(model_id, "status_changed", {"status": status, "previous": previous, "record": record})
            if status == "ready":
                self.publish(model_id, "download_completed", {"file_path": record["file_path"]})
            elif status == "failed":
                error = record["error"] or {"code": "download_failed", "message": "the download failed"}
                self.publish(model_id, "download_failed", {"error": error["message"] or error["code"], "code": error["code"]})
            elif status == "cancelled":
                self.publish(model_id, "download_cancelled", {"bytes_done": record["bytes_done"]})
        if status == "downloading":
            self.publish(model_id, "download_progress", progress_data(record))
