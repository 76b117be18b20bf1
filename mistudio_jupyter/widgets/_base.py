"""What every mistudio widget shares: the manager, the `error` trait, actions run off the comm thread,
and the catalog watcher that brings progress to open widgets.

Messages from a view are `{action, ...fields}`. Each action runs on the widget's own worker thread (in
order, one at a time), so a Hub call never holds up the kernel's comm handling; it clears `error` first
and sets `error = exc.to_dict()` when it fails. Trait changes made off the main thread take the
widget's lock, and ipykernel sends their comm messages through its thread-safe IOPub channel.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anywidget
import traitlets

from ..core.changes import CatalogChanges
from ..core.errors import InvalidArgument, MiStudioError
from ..shared import shared_manager

if TYPE_CHECKING:
    from ..core.catalog import ModelRecord
    from ..core.service import ModelManager

STATIC = Path(__file__).parent / "static"
POLL_S = 0.5  # at most two state messages a second per widget, and progress at least once a second

log = logging.getLogger(__name__)
Handler = TypeVar("Handler", bound=Callable[..., None])


def action(name: str) -> Callable[[Handler], Handler]:
    """Mark a method as the handler of `{action: name, ...}`; the other fields are its keyword arguments."""

    def mark(method: Handler) -> Handler:
        method.mistudio_action = name  # type: ignore[attr-defined]
        return method

    return mark


class ManagerWidget(anywidget.AnyWidget):
    """A thin anywidget over a ModelManager (the kernel's shared one unless given)."""

    error = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    team = traitlets.Bool(False).tag(sync=True)  # the catalog is a team store's: views name who asked for a model
    # what the user may do (`ModelManager.permissions()`): views show only those actions; None shows every one
    can = traitlets.List(traitlets.Unicode(), allow_none=True, default_value=None).tag(sync=True)
    _css = STATIC / "styles.css"
    _actions: dict[str, str] = {}
    _closed = True  # until __init__ completes, so that close() (also from __del__) has nothing to stop

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._actions = {
            method.mistudio_action: name
            for klass in reversed(cls.__mro__)
            for name, method in vars(klass).items()
            if hasattr(method, "mistudio_action")
        }

    def __init__(self, manager: ModelManager | None = None, **kwargs: Any) -> None:
        self._state_lock = threading.RLock()
        self.manager = manager_or_shared(manager)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mistudio-{type(self).__name__}")
        super().__init__(team=self.manager.remote, **kwargs)
        self._closed = False
        self.on_msg(self._on_message)
        self.run("permissions", self._learn_permissions)

    def _learn_permissions(self) -> None:
        can = self.manager.permissions()
        with self.changes() as open_:
            if open_:
                self.can = can

    @contextmanager
    def changes(self) -> Iterator[bool]:
        """Hold the widget's lock and send the trait changes made inside as one message.

        Yields False once the widget is closed (then nothing should be changed).
        """
        with self._state_lock:
            if self._closed:
                yield False
                return
            with self.hold_sync():
                yield True

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """Apply a view's trait update under the same lock as the kernel-side changes."""
        with self._state_lock:
            super().set_state(sync_data)

    def close(self) -> None:
        """Close the views, stop watching the catalog and drop the actions not started yet."""
        if not self._closed:
            with self._state_lock:
                self._closed = True
            watcher_for(self.manager).unsubscribe(self._on_catalog)
            self._worker.shutdown(wait=False, cancel_futures=True)
        super().close()

    def run(self, name: str, work: Callable[[], None]) -> Future[None]:
        """Run `work` on the worker thread with `error` cleared first and set if it fails."""
        return self._worker.submit(self._guarded, name, work)

    def watch_catalog(self) -> None:
        """Call `_on_catalog(records)` with the whole catalog whenever it changes, until closed."""
        watcher_for(self.manager).subscribe(self._on_catalog)

    def _on_catalog(self, records: list[ModelRecord]) -> None:
        """Take the changes of interest from a catalog poll (widgets that watch override this)."""

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        fields = dict(content) if isinstance(content, dict) else {}
        name = fields.pop("action", None)
        self.run(str(name), self._handler(name, fields))

    def _handler(self, name: Any, fields: dict[str, Any]) -> Callable[[], None]:
        """The work a view's message asks for; a bad message becomes an InvalidArgument for `error`."""
        if not isinstance(name, str) or name not in self._actions:
            return partial(_raise, InvalidArgument(f"unknown action {name!r}"))
        method = getattr(self, self._actions[name])
        try:
            inspect.signature(method).bind(**fields)
        except TypeError as exc:
            return partial(_raise, InvalidArgument(f"bad {name!r} message: {exc}"))
        return partial(method, **fields)

    def _guarded(self, name: str, work: Callable[[], None]) -> None:
        with self.changes() as open_:
            if not open_:
                return
            self.error = None
        try:
            work()
        except MiStudioError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must reach the view too, not die silently on a thread
            log.exception("mistudio widget action %r failed", name)
            self._fail(MiStudioError(f"{type(exc).__name__}: {exc}"))

    def _fail(self, exc: MiStudioError) -> None:
        with self.changes() as open_:
            if open_:
                self.error = exc.to_dict()


def manager_or_shared(manager: ModelManager | None) -> ModelManager:
    """`manager`, else the process's shared one (`mistudio_jupyter.shared_manager()`)."""
    return manager if manager is not None else shared_manager()


def _raise(exc: Exception) -> None:
    raise exc


class CatalogWatcher:
    """Hands the whole catalog to every open widget of one manager when something changed (anywhere:
    another process, another host), at most every POLL_S seconds.

    It subscribes to the manager's catalog poller while any widget watches: one look and one listing
    serve every open widget.
    """

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self._subscribers: list[Callable[[list[ModelRecord]], None]] = []
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        with self._lock:
            return bool(self._subscribers)

    def subscribe(self, callback: Callable[[list[ModelRecord]], None]) -> None:
        with self._lock:
            if not self._subscribers:
                self.manager.changes.subscribe(self._on_changes, POLL_S)
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[list[ModelRecord]], None]) -> None:
        with self._lock:
            if callback not in self._subscribers:
                return
            self._subscribers.remove(callback)
            if not self._subscribers:
                self.manager.changes.unsubscribe(self._on_changes)

    def _on_changes(self, changes: CatalogChanges) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        if not changes or not subscribers:
            return
        try:
            records = self.manager.list()
        except Exception:
            log.exception("mistudio: listing the catalog failed")
            return
        for callback in subscribers:
            try:
                callback(records)
            except Exception:
                log.exception("mistudio: a widget failed to take a catalog update")


_WATCHERS: weakref.WeakKeyDictionary[Any, CatalogWatcher] = weakref.WeakKeyDictionary()
_WATCHERS_LOCK = threading.Lock()


def watcher_for(manager: ModelManager) -> CatalogWatcher:
    """The catalog watcher of `manager` (one per manager)."""
    with _WATCHERS_LOCK:
        watcher = _WATCHERS.get(manager)
        if watcher is None:
            watcher = _WATCHERS[manager] = CatalogWatcher(manager)
        return watcher
