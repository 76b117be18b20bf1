"""Downloads through a real `jupyter server` process under real faults: the server (and its workers)
SIGKILLed, the Hub process dying mid-transfer, a full disk, corrupt bytes.

Every download goes to the 50 MB `tiny/big` (or a ~0.5 MB tiny repo) throttled on the test Hub so the
fault lands mid-transfer, yet each test takes a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mistudio_jupyter.core.downloads.cache import RepoCache
from mistudio_jupyter.core.downloads.journal import read_written
from tests.hubserver import HubServer, RepoSpec
from tests.polling import wait_for
from tests.prerequisites import missing

from .conftest import assert_fetched_once, cdn_bytes, lfs_file
from .live import HubProcess, JupyterServer, jupyter, kill_workers, partials, sha256_of, worker_pids

pytestmark = pytest.mark.each_backend

BIG = "tiny/big"
THROTTLE = 20_000_000  # 50 MB in 2.5 s (loopback answers at once: one stream)


def _partial_size(cache: Path, etag: str) -> int:
    """Bytes of the big file written so far, as its journal says."""
    return read_written(RepoCache(cache, BIG).partial(etag), 1 << 40).covered()


def _assert_complete(cache: Path, repo_id: str, record: dict, sha256: str) -> None:
    """Ready, byte-identical to the Hub's file, and no partial file left anywhere in the cache."""
    assert record["status"] == "ready", (record["status"], record.get("error"), record.get("note"))
    blob = RepoCache(cache, repo_id).blob(sha256)
    assert sha256_of(blob) == sha256
    pointer = Path(record["file_path"]) / "model.safetensors"
    assert pointer.is_symlink() and pointer.resolve() == blob.resolve()
    assert partials(cache) == []


def test_server_and_workers_sigkilled_mid_download_resume_byte_identical(
    hub: HubServer,
    fixture_repos: dict[str, RepoSpec],
    tmp_path: Path,
    db_url: str,
) -> None:
    """A crash of the whole box (server and its download worker SIGKILLed at ~40%): after a restart the
    model is `interrupted`, resume continues from the bytes on disk and ends byte-identical."""
    big = lfs_file(fixture_repos, BIG)
    hub.faults.set(path="/cdn/", throttle_bps=THROTTLE)
    root = tmp_path / "jupyter"
    first = JupyterServer(root, hub.url, db_url=db_url).start()
    try:
        model_id = first.create(BIG)["id"]
        assert first.request("POST", f"/models/{model_id}/download", {})[0] == 202
        wait_for(lambda: _partial_size(first.cache, big.sha256) > big.size * 0.4, 30, what="40% on disk")
        workers = worker_pids(first.db_url)
        assert len(workers) == 1
        first.kill()
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not worker_pids(first.db_url), 10, what="the worker to die")
    finally:
        first.close()
    on_disk = _partial_size(first.cache, big.sha256)
    assert 0 < on_disk < big.size

    hub.clear_log()
    with jupyter(root, hub.url, db_url=db_url) as second:
        record = second.record(model_id)
        assert record["status"] == "interrupted", record
        assert record["bytes_done"] <= on_disk
        assert second.request("POST", f"/models/{model_id}/resume", {})[0] == 202
        final = second.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 60)
        _assert_complete(second.cache, BIG, final, big.sha256)
        refetched = cdn_bytes(hub, BIG) - (big.size - on_disk)
        assert 0 <= refetched <= big.size * 0.01, f"{refetched} bytes fetched twice"
        assert final["bytes_done"] == final["bytes_total"] == final["size_bytes"]


def test_server_sigkilled_alone_worker_finishes_and_restart_joins_it(
    hub: HubServer,
    fixture_repos: dict[str, RepoSpec],
    tmp_path: Path,
    db_url: str,
) -> None:
    """Only the server dies: its worker (own session) keeps going; the next server process on that
    catalog (started alongside, so that it is up before the 5 s transfer ends) shows it downloading, a
    repeated download request joins that job (no second transfer) and it completes."""
    big = lfs_file(fixture_repos, BIG)
    hub.faults.set(path="/cdn/", throttle_bps=THROTTLE // 2)
    root = tmp_path / "jupyter"
    first, second = JupyterServer(root, hub.url, db_url=db_url), JupyterServer(root, hub.url, db_url=db_url)
    starting = threading.Thread(target=second.start)
    starting.start()
    try:
        first.start()
        starting.join(60)
        model_id = first.create(BIG)["id"]
        assert first.request("POST", f"/models/{model_id}/download", {})[0] == 202
        wait_for(lambda: _partial_size(first.cache, big.sha256) > big.size * 0.2, 30, what="20% on disk")
        (worker,) = worker_pids(first.db_url)
        first.kill()
        assert second.record(model_id)["status"] == "downloading"
        assert second.request("POST", f"/models/{model_id}/download", {})[0] == 202
        assert worker_pids(second.db_url) == [worker]
        final = second.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 60)
        _assert_complete(second.cache, BIG, final, big.sha256)
        assert_fetched_once(hub, BIG, big.size)  # one transfer, never restarted
    finally:
        first.close()
        second.close()


def test_hub_process_dies_mid_download_and_comes_back(
    fixture_repos: dict[str, RepoSpec], tmp_path: Path, db_url: str
) -> None:
    """The Hub's process is SIGKILLed mid-body and restarted on the same port a second later: the same
    job retries from its current byte and completes, verified; nothing corrupt reaches the cache."""
    big = lfs_file(fixture_repos, BIG)
    faults = {"/cdn/": {"throttle_bps": THROTTLE}}
    hub = HubProcess(faults=faults).start()
    try:
        with jupyter(tmp_path / "jupyter", hub.url, db_url=db_url) as server:
            model_id = server.create(BIG)["id"]
            assert server.request("POST", f"/models/{model_id}/download", {})[0] == 202
            wait_for(lambda: _partial_size(server.cache, big.sha256) > big.size * 0.3, 30, what="30% on disk")
            hub.kill()
            cut_at = _partial_size(server.cache, big.sha256)
            time.sleep(1.0)
            assert server.record(model_id)["status"] == "downloading"  # retrying, not failed
            hub = HubProcess(port=hub.port, faults=faults).start()
            final = server.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 60)
            logs = "".join(path.read_text() for path in server.worker_logs.glob("*.log"))
            assert final["status"] == "ready", (final.get("error"), logs[-3000:])
            _assert_complete(server.cache, BIG, final, big.sha256)
            assert cut_at < big.size
            assert "retrying model.safetensors" in logs
    finally:
        hub.kill()


def test_insufficient_disk_fails_cleanly_then_resumes_when_space_is_back(
    hub: HubServer,
    fixture_repos: dict[str, RepoSpec],
    tmp_path: Path,
    db_url: str,
) -> None:
    """With the cache volume reported full, the job fails with `insufficient_disk` before any byte of
    the weights, with "needs X MB, 1 KB free in DIR"; the catalog row and the cache stay consistent, and
    the same entry downloads once there is room (a restarted server)."""
    root = tmp_path / "jupyter"
    with jupyter(root, hub.url, db_url=db_url, env={"MISTUDIO_FREE_DISK_BYTES": "1000"}) as server:
        events = server.ws()
        try:
            events.subscribe("models")
            model_id = server.create(BIG)["id"]
            hub.clear_log()
            assert server.request("POST", f"/models/{model_id}/download", {})[0] == 202
            record = server.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 30)
            assert record["status"] == "failed"
            assert record["error"]["code"] == "insufficient_disk"
            assert "1 KB free in" in record["error"]["message"] and str(server.cache) in record["error"]["message"]
            assert not [r for r in hub.log if r.path.startswith("/cdn/")]  # not one byte of the weights
            assert not list(server.cache.rglob("blobs/*")) and partials(server.cache) == []
            wait_for(lambda: events.events(model_id, "download_failed"), 30, what="download_failed event")
            assert events.events(model_id, "download_failed")[0]["data"]["code"] == "insufficient_disk"
            status, listing = server.request("GET", "/models")
            assert status == 200 and [m["id"] for m in listing["models"]] == [model_id]
        finally:
            events.close()
    with jupyter(root, hub.url, db_url=db_url) as server:
        assert server.record(model_id)["status"] == "failed"
        assert server.request("POST", f"/models/{model_id}/resume", {})[0] == 202
        final = server.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 60)
        _assert_complete(server.cache, BIG, final, lfs_file(fixture_repos, BIG).sha256)


@contextlib.contextmanager
def _small_volume(path: Path, size: str):
    path.mkdir(parents=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mount.returncode != 0:
        missing(
            f"a size-limited tmpfs ({mount.stderr.strip() or f'mount exited {mount.returncode}'}): "
            "run the tests as root, or with CAP_SYS_ADMIN, as CI does"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_disk_really_fills_mid_download_reports_insufficient_disk(
    hub: HubServer,
    fixture_repos: dict[str, RepoSpec],
    tmp_path: Path,
    db_url: str,
) -> None:
    """A 30 MB volume whose free space the pre-check is lied to about: the disk really fills at ~60% of
    the 50 MB file. The failure must be `insufficient_disk`, nothing reaches `blobs/`, the catalog is
    consistent and the partial is resumable."""
    big = lfs_file(fixture_repos, BIG)
    hub.faults.set(path="/cdn/", throttle_bps=THROTTLE * 2)
    root = tmp_path / "jupyter"
    root.mkdir()
    with _small_volume(root / "cache", "30m"):
        with jupyter(root, hub.url, db_url=db_url, env={"MISTUDIO_FREE_DISK_BYTES": str(10**12)}) as server:
            model_id = server.create(BIG)["id"]
            assert server.request("POST", f"/models/{model_id}/download", {})[0] == 202
            record = server.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 60)
            assert record["status"] == "failed"
            assert not RepoCache(server.cache, BIG).blob(big.sha256).exists()
            assert server.request("GET", "/models")[0] == 200
            assert record["error"]["code"] == "insufficient_disk", record["error"]


def test_corrupt_bytes_never_reach_blobs(
    hub: HubServer, fixture_repos: dict[str, RepoSpec], tmp_path: Path, server: JupyterServer
) -> None:
    """The Hub flips a byte of every weights body: the job fails clearly after one retry, a watcher that
    hashes everything appearing in `blobs/` never sees a file whose content is not its name; once the Hub
    is healthy again, resume gives the right bytes."""
    repo_id = "tiny/gpt2"
    weights = lfs_file(fixture_repos, repo_id)
    hub.faults.set(path=f"/{repo_id}/model.safetensors", corrupt=True)
    blobs = RepoCache(server.cache, repo_id).root / "blobs"
    seen_bad: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for path in list(blobs.glob("*")) if blobs.exists() else []:
                if path.name.endswith(".incomplete") or len(path.name) != 64:
                    continue  # partials, and git-sha1 named small files (checked by the engine too)
                with contextlib.suppress(FileNotFoundError):
                    if sha256_of(path) != path.name:
                        seen_bad.append(path.name)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        model_id = server.create(repo_id)["id"]
        assert server.request("POST", f"/models/{model_id}/download", {})[0] == 202
        record = server.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 30)
    finally:
        stop.set()
        watcher.join(5)
    assert record["status"] == "failed" and record["error"]["code"] == "download_failed", record
    assert "verification" in record["error"]["message"]
    assert not seen_bad
    assert not (blobs / weights.sha256).exists()
    requests = [r for r in hub.log if r.path.startswith("/cdn/") and r.path.endswith(f"/{repo_id}/model.safetensors")]
    assert len(requests) == 2  # fetched once more, then given up
    hub.faults.reset()
    assert server.request("POST", f"/models/{model_id}/resume", {})[0] == 202
    final = server.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 30)
    assert final["status"] == "ready" and sha256_of(blobs / weights.sha256) == weights.sha256
    assert partials(server.cache) == []
    kill_workers(server.db_url)
