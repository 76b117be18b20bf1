"""The event hub over a real catalog poller, without a server: routing, dead sockets, row changes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from mistudio_jupyter.server.events import EventHub

from .conftest import check_event

pytestmark = pytest.mark.each_backend


class Sink:
    def __init__(self, alive: bool = True) -> None:
        self.alive = alive
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> bool:
        if self.alive:
            check_event(message)
            self.messages.append(message)
        return self.alive

    def events(self) -> list[str]:
        return [message["event"] for message in self.messages]


async def until(predicate: Callable[[], Any], timeout: float = 10) -> Any:
    """Let the event loop run (the catalog's changes reach the hub through it) until `predicate` holds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        await asyncio.sleep(0.02)
    return value


@pytest.fixture
def manager(settings: Settings) -> Iterator[ModelManager]:
    manager = ModelManager(settings)
    yield manager
    manager.close()


@pytest.fixture
def event_hub(manager: ModelManager) -> Iterator[EventHub]:
    events = EventHub(manager, logging.getLogger("test"))
    yield events
    events.stop()


async def watched(event_hub: EventHub) -> Sink:
    """A socket subscribed to every model, once the hub has learnt the catalog as it is."""
    sink = Sink()
    event_hub.add(sink)
    event_hub.subscribe(sink, "models")
    await until(lambda: event_hub._learnt)
    return sink


async def test_routing_and_dead_sockets(event_hub: EventHub) -> None:
    one, every, dead, other = Sink(), Sink(), Sink(alive=False), Sink()
    for sink in (one, every, dead, other):
        event_hub.add(sink)
    event_hub.subscribe(one, "model/a")
    event_hub.subscribe(every, "models")
    event_hub.subscribe(dead, "models")
    event_hub.subscribe(other, "model/b")
    event_hub.publish("a", "download_cancelled", {"bytes_done": 1})
    assert one.events() == every.events() == ["download_cancelled"] and other.messages == []
    assert every.messages[0]["channel"] == "model/a"
    assert dead not in event_hub._subscriptions
    event_hub.unsubscribe(one, "model/a")
    event_hub.publish("a", "download_cancelled", {"bytes_done": 2})
    assert len(one.messages) == 1 and len(every.messages) == 2


async def test_catalog_changes_become_events(event_hub: EventHub, manager: ModelManager) -> None:
    sink = await watched(event_hub)
    assert sink.messages == []

    record = manager.add("tiny/gpt2")  # as a kernel or the CLI would, straight into the catalog
    await until(lambda: sink.events() == ["status_changed"])
    assert sink.messages[0]["data"]["previous"] is None

    manager.catalog.update(record.id, status="downloading", bytes_done=10, bytes_total=100, current_file="a")
    await until(lambda: sink.events()[1:3] == ["status_changed", "download_progress"])
    assert sink.messages[2]["data"]["progress"] == 0.1 and sink.messages[2]["data"]["current_file"] == "a"
    await until(lambda: len(sink.events()) > 3)  # nothing new: the running download's progress is repeated
    assert set(sink.events()[3:]) == {"download_progress"}

    manager.catalog.update(record.id, status="failed", error_code="hub_unreachable", error_message="no Hub")
    await until(lambda: "download_failed" in sink.events())
    assert sink.messages[-1]["data"] == {"error": "no Hub", "code": "hub_unreachable"}
    assert sink.events()[-2] == "status_changed"

    manager.catalog.update(record.id, status="ready", file_path="/cache/x")
    await until(lambda: sink.events()[-1] == "download_completed")
    settled = len(sink.messages)
    await asyncio.sleep(1.5)
    assert len(sink.messages) == settled, "nothing runs: nothing more is said"


async def test_deletions_are_announced_once_wherever_they_happen(
    event_hub: EventHub, manager: ModelManager, settings: Settings
) -> None:
    kept, elsewhere, here = (manager.add(repo).id for repo in ("tiny/gpt2", "tiny/llama", "tiny/qwen2"))
    sink = await watched(event_hub)

    other = ModelManager(settings)  # another process's manager: its own connections to the same catalog
    other.delete(elsewhere)
    other.close()
    manager.delete(here)
    event_hub.model_deleted(here)  # what the server's DELETE handler does
    await until(lambda: len(sink.messages) == 2)
    await asyncio.sleep(1.5)

    deleted = [(m["channel"], m["data"]["previous"]) for m in sink.messages if m["data"].get("status") == "deleted"]
    assert sorted(deleted) == sorted([(f"model/{here}", "pending"), (f"model/{elsewhere}", "pending")])
    assert len(sink.messages) == 2 and f"model/{kept}" not in {m["channel"] for m in sink.messages}


async def test_the_hub_watches_only_while_sockets_are_open(event_hub: EventHub, manager: ModelManager) -> None:
    sink = Sink()
    event_hub.add(sink)
    assert event_hub.watching and manager.changes.running
    event_hub.remove(sink)
    assert not event_hub.watching
    await until(lambda: not manager.changes.running)
