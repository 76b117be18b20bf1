"""Load on one live server: 4 concurrent downloads, 20 concurrent previews and 5 event sockets, while a
probe keeps listing the catalog. Everything completes and the server keeps answering."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hubserver import HubServer, RepoSpec
from tests.polling import wait_for

from .conftest import assert_fetched_once, lfs_file
from .live import JupyterServer, sha256_of

pytestmark = pytest.mark.each_backend

DOWNLOADS = ("tiny/llama", "tiny/qwen3", "tiny/phi3", "tiny/mistral")
PREVIEWS = ("tiny/gpt2", "tiny/pythia", "tiny/gemma", "tiny/gemma2", "tiny/qwen2")  # none downloaded here


def test_downloads_previews_and_sockets_at_once(
    hub: HubServer, fixture_repos: dict[str, RepoSpec], tmp_path: Path, db_url: str
) -> None:
    hub.faults.set(path="/cdn/", throttle_bps=50_000)  # each weights file ~12 s, so all four overlap
    server = JupyterServer(tmp_path / "jupyter", hub.url, db_url=db_url, max_parallel=4).start()
    sockets = [server.ws() for _ in range(5)]
    probe_ms: list[float] = []
    probe_errors: list[int | str] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status, _ = server.request("GET", "/models", timeout=10)
            except OSError as error:  # a probe that timed out must fail the test, not end the probe quietly
                status = repr(error)
            probe_ms.append((time.perf_counter() - started) * 1000)
            if status != 200:
                probe_errors.append(status)
            time.sleep(0.1)

    prober = threading.Thread(target=probe, daemon=True)
    try:
        for socket in sockets:
            socket.subscribe("models")
        prober.start()
        ids = {repo: server.create(repo)["id"] for repo in DOWNLOADS}
        with ThreadPoolExecutor(24) as pool:
            starts = [pool.submit(server.request, "POST", f"/models/{ids[repo]}/download", {}) for repo in DOWNLOADS]
            previews = [
                pool.submit(
                    server.request, "POST", "/models/preview", {"repo_id": PREVIEWS[i % len(PREVIEWS)]}, timeout=120
                )
                for i in range(20)
            ]
            assert [f.result()[0] for f in starts] == [202] * 4
            wait_for(
                lambda: sum(server.record(i)["status"] == "downloading" for i in ids.values()) == 4,
                60,
                what="four downloads at once",
            )
            results = [f.result() for f in previews]
        assert [status for status, _ in results] == [200] * 20, [r for r in results if r[0] != 200][:1]
        assert all(body["params"] > 0 and body["files"] for _, body in results)
        for repo, model_id in ids.items():
            final = server.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 120)
            assert final["status"] == "ready", final
            weights = lfs_file(fixture_repos, repo)
            assert sha256_of(Path(final["file_path"]) / "model.safetensors") == weights.sha256
            assert_fetched_once(hub, repo, weights.size)
        for socket in sockets:
            wait_for(
                lambda s=socket: all(s.events(i, "download_completed") for i in ids.values()),
                10,
                what="download_completed on every socket",
            )
            assert all(s.events(i, "download_progress") for s in [socket] for i in ids.values())
        stop.set()
        prober.join(15)
        assert not probe_errors
        assert len(probe_ms) >= 5
        assert max(probe_ms) < 5000 and statistics.median(probe_ms) < 500, (max(probe_ms), statistics.median(probe_ms))
        assert server.request("GET", "/system")[0] == 200
    finally:
        stop.set()
        for socket in sockets:
            socket.close()
        server.close()
