"""Widget tests run without a kernel: each widget's comm is a recorder of the messages it sends, and
view messages are fed to it as the frontend would send them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from mistudio_jupyter.shared import use_shared_manager


class Comm:
    """What a widget sent: `(wall-clock time, data)` of every comm message."""

    def __init__(self, widget: Any) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []
        widget.comm.publish_msg = self._publish

    def _publish(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **_: Any) -> None:
        self.messages.append((time.time(), data or {}))

    def updates(self, trait: str) -> list[Any]:
        """Every value of `trait` sent to the views, in order."""
        return [
            data["state"][trait]
            for _, data in self.messages
            if data.get("method") == "update" and trait in data.get("state", {})
        ]


def send(widget: Any, **content: Any) -> None:
    """A custom message from the view (`model.send(content)`)."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def set_from_view(widget: Any, **state: Any) -> None:
    """A trait change made and saved in the view (`model.set(...); model.save_changes()`)."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


@pytest.fixture
def manager(settings: Settings) -> Iterator[ModelManager]:
    """A ModelManager over the test Hub, also the process's shared manager (the magic's and widgets')."""
    manager = ModelManager(settings)
    previous = use_shared_manager(manager)
    yield manager
    use_shared_manager(previous)
    for record in manager.list():
        if record.status in ("pending", "downloading"):
            manager.cancel(record.id)
    manager.close()


@pytest.fixture
def widgets() -> Iterator[list[Any]]:
    """Widgets to close after the test (append them)."""
    opened: list[Any] = []
    yield opened
    for widget in opened:
        widget.close()
