"""A gated download with a token leaves the token nowhere: not in a log line (server, in debug, and
workers), a catalog byte (the SQLite file and its WAL), an API response, a WebSocket message, a file
of the cache or a child process's argv."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil

from tests.hubserver import HubServer
from tests.polling import wait_for
from tests.reliability.live import JupyterServer

TOKEN = "hf_test_good"
BAD_TOKEN = "hf_test_notvalid_secret"


def test_token_of_a_gated_download_appears_nowhere(hub: HubServer, tmp_path: Path) -> None:
    hub.faults.set(path="/cdn/", throttle_bps=300_000)  # ~2 s, so the argv watcher sees the worker
    server = JupyterServer(tmp_path / "jupyter", hub.url, extra_args=["--debug"]).start()
    responses: list[bytes] = []
    argv: list[str] = []
    stop = threading.Event()

    def call(method: str, path: str, body: object = None) -> tuple[int, object]:
        status, headers, payload = server.exchange(method, path, body)
        responses.append(repr((status, dict(headers), payload)).encode())
        return status, payload

    def watch_processes() -> None:
        root = psutil.Process(server.process.pid)  # type: ignore[union-attr]
        while not stop.is_set():
            for process in [root, *root.children(recursive=True)]:
                try:
                    argv.append(" ".join(process.cmdline()))
                except psutil.Error:
                    pass
            time.sleep(0.02)

    events = server.ws()
    watcher = threading.Thread(target=watch_processes, daemon=True)
    try:
        events.subscribe("models")
        watcher.start()
        status, preview = call("POST", "/models/preview", {"repo_id": "tiny/gated", "token": TOKEN})
        assert status == 200 and preview["gated"], preview
        status, refused = call("POST", "/models/preview", {"repo_id": "tiny/gated", "token": BAD_TOKEN})
        assert status == 401, refused
        status, record = call("POST", "/models", {"repo_id": "tiny/gated"})
        model_id = record["id"]
        status, denied = call("POST", f"/models/{model_id}/download", {"token": BAD_TOKEN})
        assert status == 401 and denied["error"]["code"] == "invalid_token", denied  # refused before it starts
        status, _ = call("POST", f"/models/{model_id}/download", {"token": TOKEN})
        assert status == 202
        wait_for(
            lambda: any("mistudio_jupyter.core.downloads.worker" in line for line in argv),
            20,
            what="the worker in the process table",
        )
        final = server.wait_status(model_id, {"ready", "failed"}, 60)
        assert final["status"] == "ready", final
        for method, path in [
            ("GET", "/models"),
            ("GET", f"/models/{model_id}"),
            ("GET", f"/models/{model_id}/architecture"),
            ("GET", f"/models/{model_id}/hooks"),
            ("GET", f"/models/{model_id}/estimate"),
            ("GET", "/system"),
            ("GET", "/cache"),
        ]:
            assert call(method, path)[0] == 200, path
        wait_for(lambda: events.events(model_id, "download_completed"), 10, what="download_completed")
    finally:
        stop.set()
        watcher.join(5)
        events.close()
        server.close()

    assert events.raw and responses and argv
    worker_logs = list(server.worker_logs.glob("*.log"))
    assert worker_logs and (tmp_path / "jupyter" / "server.log").stat().st_size > 0
    for secret in (TOKEN, BAD_TOKEN):
        needle = secret.encode()
        assert not [r for r in responses if needle in r], "a response holds the token"
        assert not [m for m in events.raw if secret in m], "a WebSocket message holds the token"
        assert not [a for a in argv if secret in a], "a child process's argv holds the token"
        leaking = [str(p) for p in (tmp_path / "jupyter").rglob("*") if p.is_file() and needle in p.read_bytes()]
        assert not leaking, f"the token is written in {leaking}"  # logs, catalog + WAL, cache, runtime
