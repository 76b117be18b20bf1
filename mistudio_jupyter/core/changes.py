"""What changed in the catalog between two looks, whichever process changed it, and the one poller per
manager that looks for everyone in this process.

Downloads write their progress to the catalog from their own processes, and the CLI, a kernel or the
server may add or delete entries at any time. A `ChangeTracker` finds all of it the same way: it
compares every entry's `updated_at` with the previous look (one narrow query when nothing moved) and
reads the full rows only of what did. Deletions show up as ids that are gone, and no two hosts'
clocks have to agree. On PostgreSQL the catalog notifies the id of every entry written
(`LISTEN mistudio_models`), so a look reads only the notified rows instead of every entry's version.

A `CatalogPoller` runs one tracker on one thread while anyone subscribes (download handles, the
widgets' watcher, the server's event hub), so a process looks at its catalog once per tick however
many downloads and views are open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .catalog import ModelRecord
    from .store import LocalStore

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CatalogChanges:
    """Entries added or updated since the last look (least recently updated first), and ids deleted.

    `complete` when `changed` is every entry of the catalog (a subscriber's first delivery, if asked).
    """

    changed: list[ModelRecord]
    deleted: list[str]
    complete: bool = False

    def __bool__(self) -> bool:
        return bool(self.changed or self.deleted)

    def merged(self, later: CatalogChanges) -> CatalogChanges:
        """These changes followed by `later` ones, as one look over both spans would report them."""
        if not self or not later:
            return later if not self else self
        gone = set(later.deleted)
        records = {record.id: record for record in self.changed if record.id not in gone}
        records.update({record.id: record for record in later.changed})
        deleted = list(dict.fromkeys(self.deleted + later.deleted))
        return CatalogChanges(sorted(records.values(), key=lambda record: record.updated_at), deleted)


NO_CHANGES = CatalogChanges([], [])


class ChangeTracker:
    """`look()` returns the changes since the previous `look()`; the first one reports every entry.

    Each look first turns entries whose download worker is gone `interrupted`, as listing does.
    """

    def __init__(self, manager: LocalStore) -> None:
        self._manager = manager
        self._versions: dict[str, dt.datetime] = {}

    def look(self) -> CatalogChanges:
        self._manager.downloads.refresh_all()
        versions = self._manager.catalog.versions()
        deleted = [model_id for model_id in self._versions if model_id not in versions]
        moved = [model_id for model_id, at in versions.items() if self._versions.get(model_id) != at]
        changed = self._manager.catalog.get_many(moved) if moved else []
        # Rows read after `versions` may be newer still: remember what was reported, not what was listed.
        self._versions = {**versions, **{record.id: record.updated_at for record in changed}}
        return CatalogChanges(changed, deleted)

    def everything(self) -> list[ModelRecord]:
        """Every entry, least recently updated first."""
        return self._manager.catalog.list(sort="updated_at")

    def close(self) -> None:
        """Release what the tracker holds between looks (nothing here); the next look starts again."""


class NotifiedChangeTracker(ChangeTracker):
    """A tracker of a PostgreSQL catalog: it listens to the ids the catalog notifies and reads only those.

    Its first look after `close()` compares every entry's version, as the polling tracker does, to
    learn what changed while it was not listening.
    """

    CHANNEL = "mistudio_models"

    def __init__(self, manager: LocalStore) -> None:
        super().__init__(manager)
        self._listener: Any = None

    def look(self) -> CatalogChanges:
        try:
            if self._listener is None:
                self._listen()
                return super().look()
            return self._notified_changes()
        except Exception:  # notifications may have been missed: the next look listens again, compares all
            self.close()
            raise

    def _notified_changes(self) -> CatalogChanges:
        self._manager.downloads.refresh_all()
        notified = self._notified_ids()
        if not notified:
            return NO_CHANGES
        records = self._manager.catalog.get_many(notified)
        found = {record.id for record in records}
        changed = [record for record in records if self._versions.get(record.id) != record.updated_at]
        deleted = [model_id for model_id in notified - found if self._versions.pop(model_id, None) is not None]
        self._versions.update({record.id: record.updated_at for record in changed})
        return CatalogChanges(changed, deleted)

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()

    def _listen(self) -> None:
        """Open a connection of our own (not the pool's) and listen on it."""
        pooled = self._manager.catalog.engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()
        connection.rollback()  # the pool's liveness check may have opened a transaction
        connection.autocommit = True
        connection.execute(f"LISTEN {self.CHANNEL}")
        self._listener = connection

    def _notified_ids(self) -> set[str]:
        """Ids notified by every write committed before this call (a round trip brings them all in)."""
        self._listener.execute("SELECT 1")
        return {notice.payload for notice in self._listener.notifies(timeout=0)}


def change_tracker(manager: LocalStore) -> ChangeTracker:
    """The tracker for the manager's catalog: notified on PostgreSQL, polling elsewhere."""
    if manager.catalog.engine.dialect.name == "postgresql":
        return NotifiedChangeTracker(manager)
    return ChangeTracker(manager)


Listener = Callable[[CatalogChanges], None]


class Tracker(Protocol):
    """What a poller looks through: a `ChangeTracker`, or the team store's (`core.remote`)."""

    def look(self) -> CatalogChanges: ...

    def everything(self) -> list[ModelRecord]: ...

    def close(self) -> None: ...


@dataclasses.dataclass(eq=False)
class Subscription:
    """One subscriber of a poller: called with the changes since its previous call, every `interval_s`
    seconds (empty changes too, so that it can also watch something else on that beat)."""

    listener: Listener
    interval_s: float
    wants_everything: bool = False
    due: float = 0.0
    pending: CatalogChanges = NO_CHANGES


class CatalogPoller:
    """Looks at one catalog (through its tracker) on a thread while anyone subscribes, as often as the most eager
    subscriber asks, and hands every subscriber what changed since its last call.

    The thread ends with the last subscriber; the tracker stays, so the next subscriber hears of what
    changed meanwhile rather than of the whole catalog again.
    """

    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def subscribe(self, listener: Listener, interval_s: float, *, everything_first: bool = False) -> Subscription:
        """Call `listener(changes)` every `interval_s` s until unsubscribed; with `everything_first`, the
        first call holds every entry (`changes.complete`)."""
        subscription = Subscription(listener, interval_s, wants_everything=everything_first)
        with self._lock:
            self._subscriptions.append(subscription)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mistudio-catalog-poller", daemon=True)
                self._thread.start()
        self._wake.set()
        return subscription

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling `listener` (it may still be in the middle of its last call)."""
        with self._lock:
            self._subscriptions = [s for s in self._subscriptions if s.listener != listener]
        self._wake.set()

    def deliver_now(self, listener: Listener) -> None:
        """Look at the catalog now and call `listener` without waiting for its next beat."""
        with self._lock:
            for subscription in self._subscriptions:
                if subscription.listener == listener:
                    subscription.due = time.monotonic()
        self._wake.set()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._wake.clear()
                if not self._subscriptions:
                    self._thread = None
                    self._tracker.close()
                    return
                subscriptions = list(self._subscriptions)
            self._deliver(subscriptions, self._look())
            with self._lock:
                next_due = min((s.due for s in self._subscriptions), default=time.monotonic())
            self._wake.wait(max(next_due - time.monotonic(), 0.0))

    def _look(self) -> CatalogChanges:
        try:
            return self._tracker.look()
        except Exception:  # a failed look (database busy, say) must not end the poller
            log.warning("mistudio: looking at the catalog failed", exc_info=True)
            return NO_CHANGES

    def _deliver(self, subscriptions: list[Subscription], changes: CatalogChanges) -> None:
        now = time.monotonic()
        everything: CatalogChanges | None = None
        for subscription in subscriptions:
            subscription.pending = subscription.pending.merged(changes)
            if subscription.wants_everything:
                everything = everything or self._everything()
                if everything is None:
                    continue  # asked again on the next tick
                subscription.pending, subscription.wants_everything = everything, False
            elif now < subscription.due:
                continue
            delivered, subscription.pending = subscription.pending, NO_CHANGES
            try:
                subscription.listener(delivered)
            except Exception:
                log.exception("mistudio: a catalog subscriber failed")
            # From the end of the call: what a listener sends is at least `interval_s` apart, however long it took.
            subscription.due = time.monotonic() + subscription.interval_s

    def _everything(self) -> CatalogChanges | None:
        try:
            return CatalogChanges(self._tracker.everything(), [], complete=True)
        except Exception:  # as a failed look: the poller goes on
            log.warning("mistudio: reading the whole catalog failed", exc_info=True)
            return None
