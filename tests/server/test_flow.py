"""End to end over HTTP and the event socket, against the test Hub with real downloads."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.websocket import WebSocketClientConnection

from mistudio_jupyter.core.settings import Settings
from tests.hubserver import HubServer, WanProfile

from .conftest import API, Api, check_event

pytestmark = pytest.mark.each_backend

BIG = "tiny/big"
BIG_FILE = "model.safetensors"
REPO = Path(__file__).resolve().parents[2]


class Events:
    """The event socket: subscribe, then read messages (each checked against the OpenAPI document)."""

    def __init__(self, connect: Callable[[], Awaitable[WebSocketClientConnection]]) -> None:
        self._connect = connect
        self.socket: WebSocketClientConnection | None = None
        self.received: list[tuple[float, dict[str, Any]]] = []

    async def send(self, message: str) -> None:
        if self.socket is None:
            self.socket = await self._connect()
        await self.socket.write_message(message)

    async def subscribe(self, channel: str) -> None:
        await self.send(json.dumps({"action": "subscribe", "channel": channel}))
        await self.until(lambda m: m["event"] == "subscribed" and m["channel"] == channel, timeout=5)

    async def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            assert self.socket is not None
            raw = await asyncio.wait_for(self.socket.read_message(), max(deadline - time.monotonic(), 0.01))
            assert raw is not None, "the event socket closed"
            event = json.loads(raw)
            check_event(event)
            self.received.append((time.monotonic(), event))
            if done(event):
                return event

    def of(self, event: str, model_id: str | None = None) -> list[tuple[float, dict[str, Any]]]:
        return [
            (at, m)
            for at, m in self.received
            if m["event"] == event and (model_id is None or m["channel"] == f"model/{model_id}")
        ]


@pytest.fixture
def events(jp_ws_fetch: Callable[..., Awaitable[WebSocketClientConnection]]) -> Iterator[Events]:
    """The event socket (connected on first use)."""
    events = Events(lambda: jp_ws_fetch(*f"{API}/events".split("/")))
    yield events
    if events.socket is not None:
        events.socket.close()


def _event(name: str, model_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["event"] == name and m["channel"] == f"model/{model_id}"


async def test_whole_flow(api: Api, events: Events, hub: HubServer, settings: Settings) -> None:
    status, preview = await api("POST", "/models/preview", {"repo_id": BIG})
    assert status == 200 and preview["download_bytes"] > 40_000_000

    status, record = await api("POST", "/models", {"repo_id": BIG, "quantization": "bnb-8bit"})
    assert status == 200 and record["status"] == "pending"
    model_id = record["id"]
    await events.subscribe(f"model/{model_id}")

    hub.faults.wan = WanProfile(link_bps=12e6)  # ~4.5 s for the 50 MB file, however many streams
    status, started = await api("POST", f"/models/{model_id}/download", {})
    assert status == 202 and started["status"] in ("pending", "downloading")
    completed = await events.until(_event("download_completed", model_id), timeout=60)
    assert completed["data"]["file_path"]

    progress = [at for at, _ in events.of("download_progress", model_id)]
    gaps = [b - a for a, b in zip(progress, progress[1:])]
    # Progress keeps coming while it runs; how often exactly is a timing figure, not a test's to assert.
    assert len(progress) >= 3 and max(gaps) <= 10, gaps
    fractions = [m["data"]["progress"] for _, m in events.of("download_progress", model_id)]
    assert fractions == sorted(fractions) and 0 < fractions[-1] <= 1

    status, ready = await api("GET", f"/models/{model_id}")
    assert status == 200 and ready["status"] == "ready" and ready["file_path"] == completed["data"]["file_path"]
    status, architecture = await api("GET", f"/models/{model_id}/architecture")
    assert status == 200 and architecture["summary"]["num_layers"] >= 1
    status, hooks = await api("GET", f"/models/{model_id}/hooks")
    assert status == 200 and any(hook["category"] == "residual" for hook in hooks)
    status, with_modules = await api("GET", f"/models/{model_id}/hooks", params={"include_modules": "true"})
    assert status == 200 and len(with_modules) > len(hooks)
    status, estimate = await api("GET", f"/models/{model_id}/estimate", params={"context": 128})
    assert status == 200 and "bnb-8bit" in estimate["memory"]

    status, deleted = await api("DELETE", f"/models/{model_id}")
    assert status == 200 and deleted["id"] == model_id and deleted["freed_bytes"] > 40_000_000
    await events.until(lambda m: _event("status_changed", model_id)(m) and m["data"]["status"] == "deleted", timeout=30)
    assert (await api("GET", f"/models/{model_id}"))[0] == 404
    assert (await api("GET", "/models"))[1]["models"] == []


async def test_cancel_and_resume_over_rest(api: Api, events: Events, hub: HubServer) -> None:
    _, record = await api("POST", "/models", {"repo_id": BIG})
    model_id = record["id"]
    await events.subscribe("models")
    hub.faults.wan = WanProfile(link_bps=4e6)
    assert (await api("POST", f"/models/{model_id}/download"))[0] == 202
    await events.until(lambda m: _event("download_progress", model_id)(m) and m["data"]["bytes_done"] > 2_000_000)

    status, cancelled = await api("POST", f"/models/{model_id}/cancel", {"discard": False})
    assert status == 200
    await events.until(_event("download_cancelled", model_id), timeout=30)
    status, after = await api("GET", f"/models/{model_id}")
    assert after["status"] == "cancelled" and after["bytes_done"] > 0
    again = (await api("POST", f"/models/{model_id}/cancel"))[0]
    assert again in (200, 409)

    hub.faults.reset()
    hub.clear_log()
    status, resumed = await api("POST", f"/models/{model_id}/resume", {})
    assert status == 202
    await events.until(_event("download_completed", model_id), timeout=60)
    ranges = [r.range for r in hub.log if r.path.endswith(BIG_FILE) and r.method == "GET"]
    assert any(r and not r.startswith("bytes=0-") for r in ranges), ranges  # continued from the bytes on disk
    assert (await api("GET", f"/models/{model_id}"))[1]["status"] == "ready"

    _, audit = await api("GET", "/audit")
    cancels = ["cancel"] * (2 if again == 200 else 1)  # a cancel answered 409 did nothing
    assert [(e["action"], e["model_id"]) for e in audit["entries"]] == [
        (action, model_id) for action in ("resume", *cancels, "download")
    ]
    # Jupyter names each token-authenticated request's user anew when no identity is configured
    assert record["requested_by"] and all(entry["user"] for entry in audit["entries"])


async def test_download_started_by_another_process_shows_up(events: Events, hub: HubServer, settings: Settings) -> None:
    await events.subscribe("models")
    hub.faults.wan = WanProfile(link_bps=15e6)
    script = (
        "import sys; from mistudio_jupyter.core.service import ModelManager; "
        "ModelManager(cache_dir=sys.argv[1], db_url=sys.argv[2]).download('tiny/big').wait(120)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_ENDPOINT": hub.url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(settings.cache_dir), settings.db_url, env=env
    )
    try:
        created = await events.until(lambda m: m["event"] == "status_changed" and m["data"]["previous"] is None)
        model_id = created["data"]["record"]["id"]
        await events.until(_event("download_progress", model_id))
        await events.until(_event("download_completed", model_id), timeout=90)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
    assert len(events.of("download_progress", model_id)) >= 2


async def test_stalled_hub_does_not_block_the_catalog(
    api: Api,
    hub: HubServer,
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
) -> None:
    await api("POST", "/models", {"repo_id": "tiny/gpt2"})
    hub.faults.set(path="tiny/llama", stall_s=1.0)  # each preview makes several Hub requests
    # More stalled previews than the server has threads for slow work; sent through their own client,
    # since tornado's shared client queues anything past 10 requests in flight.
    client = AsyncHTTPClient(force_instance=True, max_clients=32)
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}{API}/models/preview"
    previews = [
        asyncio.ensure_future(
            client.fetch(
                url,
                method="POST",
                body=b'{"repo_id": "tiny/llama"}',
                headers=jp_auth_header,
                raise_error=False,
                request_timeout=120,
            )
        )
        for _ in range(10)
    ]
    try:
        await asyncio.sleep(0.5)
        for _ in range(5):
            status, listing = await api("GET", "/models")
            assert status == 200 and len(listing["models"]) == 1
            # Answered while every stalled preview is still in flight: the listing queued behind none.
            assert not any(preview.done() for preview in previews)
        for response in await asyncio.gather(*previews):
            assert response.code in (200, 502), response.body
    finally:
        client.close()


async def test_socket_protocol(events: Events) -> None:
    await events.send("not json")
    error = await events.until(lambda m: True, timeout=5)
    assert error["event"] == "error" and error["data"]["code"] == "invalid_argument"
    await events.send(json.dumps({"action": "subscribe", "channel": "model/../../x"}))
    assert (await events.until(lambda m: True, timeout=5))["event"] == "error"
    await events.subscribe("model/abc")
    await events.send(json.dumps({"action": "unsubscribe", "channel": "model/abc"}))
    assert (await events.until(lambda m: True, timeout=5))["event"] == "unsubscribed"
