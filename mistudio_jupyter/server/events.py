"""Download and status events for the WebSocket, from the catalog's changes.

Every process that downloads (this server, a kernel, the CLI) writes its progress to the catalog, so
the server learns about all of them the same way: while at least one socket is open, the hub
subscribes to the manager's catalog poller (`core.changes.CatalogPoller`, shared with the server's
own download handles: once a second when nothing moves, every 0.5 s while something downloads) and
turns changed and deleted rows into events on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Protocol

from ..core.changes import CatalogChanges, Subscription
from ..core.service import ModelManager

ALL_MODELS = "models"
MAX_SUBSCRIPTIONS = 1000  # channels per socket: more than a catalog's worth of model channels
ACTIVE_INTERVAL_S = 0.5
IDLE_INTERVAL_S = 1.0
_GB = 1e9


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
    """The open sockets, their subscriptions, and the catalog subscription that feeds them."""

    def __init__(self, manager: ModelManager, log: logging.Logger) -> None:
        self._manager = manager
        self._log = log
        self._subscriptions: dict[EventSink, set[str]] = {}
        self._watch: Subscription | None = None
        self._learnt = False  # the catalog as it was when watching started
        self._status: dict[str, str] = {}
        self._downloading: dict[str, dict[str, Any]] = {}

    @property
    def watching(self) -> bool:
        """Whether the hub is subscribed to the catalog's changes (while any socket is open)."""
        return self._watch is not None

    # -- sockets -------------------------------------------------------------------------------

    def add(self, sink: EventSink) -> None:
        """Register an open socket (with no subscriptions yet) and start watching if needed.

        Called on the event loop, where the catalog's changes are then handled.
        """
        self._subscriptions[sink] = set()
        if self._watch is None:
            loop = asyncio.get_running_loop()
            self._watch = self._manager.changes.subscribe(
                lambda changes: loop.call_soon_threadsafe(self.apply, changes), IDLE_INTERVAL_S, everything_first=True
            )

    def remove(self, sink: EventSink) -> None:
        """Forget a socket; watching stops with the last one."""
        self._subscriptions.pop(sink, None)
        if not self._subscriptions:
            self.stop()

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
        dead = [
            sink
            for sink, channels in self._subscriptions.items()
            if (channel in channels or ALL_MODELS in channels) and not sink.send(payload)
        ]
        for sink in dead:
            self._log.debug("dropping a closed event socket")
            self.remove(sink)

    def model_deleted(self, model_id: str) -> None:
        """Announce a deleted entry: at once when deleted through this server, else when the catalog's
        changes show it gone."""
        previous = self._status.pop(model_id, None)
        self._downloading.pop(model_id, None)
        self.publish(model_id, "status_changed", {"status": "deleted", "previous": previous, "record": None})

    def stop(self) -> None:
        """Stop watching the catalog (the last socket closed, or the server is shutting down); the next
        watch starts from the catalog as it is then."""
        if self._watch is not None:
            self._manager.changes.unsubscribe(self._watch.listener)
            self._watch, self._learnt = None, False

    # -- the catalog's changes -----------------------------------------------------------------

    def apply(self, changes: CatalogChanges) -> None:
        """Publish the events of every row changed or deleted, and the progress of running downloads.
        The first changes (the whole catalog) are only learnt."""
        if self._watch is None or not (changes.complete or self._learnt):
            return  # on its way from an earlier watch
        records = [record.to_dict() for record in changes.changed]
        if changes.complete:
            self._status = {record["id"]: record["status"] for record in records}
            self._downloading = {record["id"]: record for record in records if record["status"] == "downloading"}
            self._learnt = True
        else:
            self._publish_changes(records, changes.deleted)
        self._watch.interval_s = ACTIVE_INTERVAL_S if self._downloading else IDLE_INTERVAL_S

    def _publish_changes(self, records: list[dict[str, Any]], deleted: list[str]) -> None:
        for record in records:
            self._on_change(record)
        for model_id in deleted:
            if model_id in self._status:  # not yet announced by `model_deleted`
                self.model_deleted(model_id)
        changed_ids = {record["id"] for record in records}
        stale_before = time.time() - self._manager.settings.heartbeat_timeout_s
        for model_id, record in list(self._downloading.items()):
            if (
                model_id not in changed_ids
                and dt.datetime.fromisoformat(record["updated_at"]).timestamp() >= stale_before
            ):
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
                self.publish(
                    model_id, "download_failed", {"error": error["message"] or error["code"], "code": error["code"]}
                )
            elif status == "cancelled":
                self.publish(model_id, "download_cancelled", {"bytes_done": record["bytes_done"]})
        if status == "downloading":
            self.publish(model_id, "download_progress", progress_data(record))
