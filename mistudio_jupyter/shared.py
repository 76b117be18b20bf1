"""The process's one ModelManager, shared by the `%mistudio` magic, the notebook widgets and the user's
own code in a kernel, so that they all see one catalog and one download poller."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core.service import ModelManager

_manager: ModelManager | None = None
_lock = threading.Lock()


def shared_manager() -> ModelManager:
    """This process's shared ModelManager, created from the environment on first use."""
    global _manager
    with _lock:
        if _manager is None:
            from .core.service import ModelManager

            _manager = ModelManager()
        return _manager


def use_shared_manager(manager: ModelManager | None) -> ModelManager | None:
    """Make `manager` the shared one (None: create one from the environment on next use); returns the
    one it replaces."""
    global _manager
    with _lock:
        previous, _manager = _manager, manager
        return previous
