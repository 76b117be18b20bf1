"""Downloads end to end: real child processes, real huggingface_hub parts, the test Hub with faults."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mistudio_jupyter.core.downloads.cache import PARTIAL_SUFFIX, RepoCache
from mistudio_jupyter.core.catalog import ModelRecord
from mistudio_jupyter.core.downloads.manager import local_worker_pid, log_dir, worker_alive
from mistudio_jupyter.core.errors import (
    Cancelled,
    Conflict,
    DownloadFailed,
    GatedLoginRequired,
    GatedNotApproved,
    InsufficientDisk,
    InvalidToken,
    RepoNotFound,
    RevisionNotFound,
)
from mistudio_jupyter.core.service import ModelManager
from tests.polling import wait_for

BIG = "tiny/big"
BIG_FILE = "model.safetensors"


@pytest.fixture(autouse=True)
def _no_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The architecture summary imports torch in every worker; only the test that checks it pays."""
    monkeypatch.setenv("MISTUDIO_DOWNLOAD_SUMMARY", "0")


@pytest.fixture
def manager(settings):
    manager = ModelManager(settings)
    yield manager
    for record in manager.list():
        if record.status in ("pending", "downloading"):
            manager.cancel(record.id)
    manager.close()


def cdn_gets(hub, path: str = BIG_FILE) -> list[Any]:
    """The GETs that carried a file's bytes (LFS files come from the CDN origin)."""
    return [r for r in hub.log if r.method == "GET" and r.path.startswith("/cdn/") and r.path.endswith("/" + path)]


def partial_size(settings, repo_id: str, etag: str) -> int:
    path = RepoCache(settings.cache_dir, repo_id).partial(etag)
    return path.stat().st_size if path.exists() else 0


def snapshot_bytes(record) -> dict[str, bytes]:
    root = Path(record.file_path)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def expected_bytes(fixture_repos, repo_id: str, record) -> dict[str, bytes]:
    files = fixture_repos[repo_id].commits[record.commit].files
    return {path: files[path].read_bytes() for path in snapshot_bytes(record)}


# --- complete downloads ------------------------------------------------------------------------


def test_multi_file_repo_is_byte_identical_and_a_normal_cache(manager, settings, fixture_repos, hub):
    record = manager.download("tiny/gpt2").wait(60)

    assert record.status == "ready" and record.commit == fixture_repos["tiny/gpt2"].sha
    got = snapshot_bytes(record)
    assert set(got) == {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                        "tokenizer_config.json"}
    assert got == expected_bytes(fixture_repos, "tiny/gpt2", record)
    assert record.size_bytes == record.bytes_total == record.bytes_done == sum(map(len, got.values()))
    assert (record.family, record.model_type, record.params) == ("gpt2", "gpt2", 141056)
    repo = RepoCache(settings.cache_dir, "tiny/gpt2")
    assert (repo.root / "refs" / "main").read_text() == record.commit
    link = Path(record.file_path) / "model.safetensors"
    assert os.readlink(link) == f"../../blobs/{fixture_repos['tiny/gpt2'].files['model.safetensors'].sha256}"
    assert not list(repo.partials())

    from huggingface_hub import scan_cache_dir

    (cached,) = scan_cache_dir(settings.cache_dir).repos
    assert cached.repo_id == "tiny/gpt2" and cached.size_on_disk == record.size_bytes
    assert {r.commit_hash for r in cached.revisions} == {record.commit}
    hf = [str(Path(sys.executable).with_name("hf")), "cache"]
    listing = subprocess.run([*hf, "ls", "--cache-dir", str(settings.cache_dir)], capture_output=True, text=True)
    assert listing.returncode == 0 and "tiny/gpt2" in listing.stdout
    verify = subprocess.run([*hf, "verify", "tiny/gpt2", "--cache-dir", str(settings.cache_dir)],
                            capture_output=True, text=True, env={**os.environ, "HF_ENDPOINT": hub.url})
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_sharded_repo_loads_with_transformers_offline_and_gets_its_summary(
        manager, settings, fixture_repos, monkeypatch):
    monkeypatch.delenv("MISTUDIO_DOWNLOAD_SUMMARY")
    record = manager.download("tiny/llama-sharded").wait(120)

    got = snapshot_bytes(record)
    assert len([p for p in got if p.endswith(".safetensors")]) == 6
    assert got == expected_bytes(fixture_repos, "tiny/llama-sharded", record)
    assert record.family == "llama" and record.params and record.params > 0
    deadline = time.monotonic() + 120  # the summary lands after `ready`, once the worker has built it
    while manager.get(record.id).architecture is None and time.monotonic() < deadline:
        time.sleep(0.2)
    summary = manager.get(record.id).to_dict()["summary"]
    assert summary["num_layers"] > 0 and summary["params"] == record.params

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained("tiny/llama-sharded", local_files_only=True,
                                                 cache_dir=settings.cache_dir)
    AutoTokenizer.from_pretrained("tiny/llama-sharded", local_files_only=True, cache_dir=settings.cache_dir)
    assert sum(p.numel() for p in model.parameters()) == record.params


# --- resume, retries, verification -------------------------------------------------------------


def test_sigkill_at_half_then_resume_refetches_under_one_percent(manager, settings, fixture_repos, hub):
    big = fixture_repos[BIG].files[BIG_FILE]
    hub.faults.set(path=BIG_FILE, throttle_bps=20_000_000)
    handle = manager.download(BIG)
    wait_for(lambda: partial_size(settings, BIG, big.etag) >= big.size // 2)
    os.kill(local_worker_pid(manager.get(handle.model_id)), signal.SIGKILL)

    # at once: from the pid, long before a heartbeat could go stale
    wait_for(lambda: manager.get(handle.model_id).status == "interrupted", timeout=1)
    first = sum(r.bytes_sent for r in cdn_gets(hub))
    hub.faults.reset()

    record = manager.resume(handle.model_id).wait(60)

    gets = cdn_gets(hub)
    refetched = sum(r.bytes_sent for r in gets) - big.size
    print(f"\nkill at {first / big.size:.0%}: re-fetched {refetched} bytes ({refetched / big.size:.3%})")
    assert record.status == "ready"
    assert gets[-1].range is not None and int(gets[-1].range.split("=")[1].rstrip("-")) >= big.size // 2
    assert refetched <= big.size // 100
    assert (Path(record.file_path) / BIG_FILE).stat().st_size == big.size


def test_cut_connection_resumes_inside_the_same_job(manager, fixture_repos, hub):
    hub.faults.set(path="/cdn/", cut_after_bytes=300_000, cut_times=1)
    record = manager.download("tiny/gpt2").wait(60)

    gets = cdn_gets(hub)
    assert record.status == "ready" and len(gets) == 2
    assert gets[1].range == "bytes=300000-"
    assert sum(r.bytes_sent for r in gets) == fixture_repos["tiny/gpt2"].files[BIG_FILE].size


def test_server_errors_are_retried(manager, hub):
    hub.faults.set(path="/cdn/", fail_requests=1, fail_times=2, fail_status=503)
    record = manager.download("tiny/gpt2").wait(60)

    assert record.status == "ready"
    assert [r.status for r in cdn_gets(hub)] == [503, 503, 200]


def test_corrupt_bytes_never_reach_blobs(manager, settings, fixture_repos, hub):
    hub.faults.set(path="/cdn/", corrupt=True)
    with pytest.raises(DownloadFailed, match="failed verification twice"):
        manager.download("tiny/gpt2").wait(60)

    etag = fixture_repos["tiny/gpt2"].files[BIG_FILE].etag
    repo = RepoCache(settings.cache_dir, "tiny/gpt2")
    assert len(cdn_gets(hub)) == 2  # discarded, fetched again once, then a clear failure
    assert not repo.blob(etag).exists() and not repo.partial(etag).exists()
    assert manager.get(manager.list()[0].id).error_code == "download_failed"


def test_corrupt_partial_on_disk_is_discarded_and_fetched_again(manager, settings, fixture_repos, hub):
    file = fixture_repos["tiny/llama"].files[BIG_FILE]
    partial = RepoCache(settings.cache_dir, "tiny/llama").partial(file.etag)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(bytes(file.size))

    record = manager.download("tiny/llama").wait(60)

    assert record.status == "ready" and [r.range for r in cdn_gets(hub)] == [None]
    assert (Path(record.file_path) / BIG_FILE).read_bytes() == file.read_bytes()


def test_a_server_that_ignores_range_restarts_the_file_from_its_first_byte(manager, settings, fixture_repos, hub):
    file = fixture_repos["tiny/llama"].files[BIG_FILE]
    partial = RepoCache(settings.cache_dir, "tiny/llama").partial(file.etag)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(file.read_bytes()[: file.size * 2 // 5])
    hub.faults.set(path="/cdn/", ignore_range=True)

    record = manager.download("tiny/llama").wait(60)

    (get,) = cdn_gets(hub)  # one transfer: restarted in place, not failed verification and fetched again
    assert get.range == f"bytes={file.size * 2 // 5}-" and get.status == 200 and get.bytes_sent == file.size
    assert record.status == "ready" and record.bytes_done == record.bytes_total
    assert (Path(record.file_path) / BIG_FILE).read_bytes() == file.read_bytes()


def test_a_low_latency_connection_gets_a_small_fixed_receive_buffer(settings, fixture_repos, hub):
    """Linux would grow the buffer to tcp_rmem's maximum; on loopback 2 MiB carry 10 GB/s, and a
    kill loses what the buffer holds."""
    from huggingface_hub import hf_hub_url

    from mistudio_jupyter.core.downloads import engine

    repo = fixture_repos[BIG]
    engine_ = engine.Engine(settings.cache_dir, endpoint=hub.url, token=None)
    url = hf_hub_url(BIG, BIG_FILE, revision=repo.sha, endpoint=hub.url)
    with engine_._open(BIG, url, 0) as response:
        sock = response.extensions["network_stream"].get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == engine.LOW_LATENCY_WINDOW_BYTES


def test_insufficient_disk_fails_before_any_byte(manager, settings, hub, monkeypatch):
    monkeypatch.setenv("MISTUDIO_FREE_DISK_BYTES", "1000")
    with pytest.raises(InsufficientDisk, match=rf"needs 0\.54 GB, 0\.00 GB free in {settings.cache_dir}"):
        manager.download("tiny/gpt2").wait(60)

    fetched = [r.path.rsplit("/", 1)[1] for r in hub.log if "/resolve/" in r.path or r.path.startswith("/cdn/")]
    assert fetched == ["config.json"]  # read by the file plan (is it remote code?), never into the cache
    assert not (RepoCache(settings.cache_dir, "tiny/gpt2").root / "blobs").exists()
    assert manager.list()[0].to_dict()["error"]["code"] == "insufficient_disk"


# --- cancel, progress, queue, joining ----------------------------------------------------------


def test_cancel_stops_within_a_second_and_discard_removes_partials(manager, settings, fixture_repos, hub):
    etag = fixture_repos[BIG].files[BIG_FILE].etag
    hub.faults.set(path=BIG_FILE, throttle_bps=5_000_000)
    handle = manager.download(BIG)
    wait_for(lambda: partial_size(settings, BIG, etag) > 0)

    started = time.monotonic()
    record = handle.cancel()
    local = time.monotonic() - started
    print(f"\ncancel latency (local, signal): {local * 1000:.0f} ms")
    assert record.status == "cancelled" and local <= 1.0
    with pytest.raises(Cancelled):
        handle.wait(5)
    kept = partial_size(settings, BIG, etag)
    assert kept > 0

    handle = manager.resume(handle.model_id)
    wait_for(lambda: partial_size(settings, BIG, etag) > kept)
    started = time.monotonic()
    manager.catalog.request_cancel(handle.model_id)  # as another host would: the flag only
    wait_for(lambda: manager.catalog.get(handle.model_id).status == "cancelled", timeout=5)
    remote = time.monotonic() - started
    print(f"cancel latency (catalog flag only): {remote * 1000:.0f} ms")
    assert remote <= 2.0

    manager.cancel(handle.model_id, discard=True)
    assert not list(RepoCache(settings.cache_dir, BIG).partials())


def test_progress_reaches_the_catalog_once_a_second(manager, settings, hub):
    hub.faults.set(path=BIG_FILE, throttle_bps=5_000_000)
    handle = manager.download(BIG)
    seen: list[tuple[float, Any]] = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        record = manager.catalog.get(handle.model_id)
        if record.status == "downloading" and (not seen or seen[-1][1].updated_at != record.updated_at):
            seen.append((time.monotonic(), record))
        time.sleep(0.02)
    manager.cancel(handle.model_id, discard=True)

    writes = [(t, r) for t, r in seen if r.current_file == BIG_FILE]
    gaps = [b[0] - a[0] for a, b in zip(writes, writes[1:])]
    print(f"\nprogress writes every {', '.join(f'{g:.2f}' for g in gaps)} s")
    assert len(writes) >= 3 and all(0.8 <= gap <= 1.3 for gap in gaps)
    last = writes[-1][1]
    assert 0 < last.bytes_done < last.bytes_total
    assert 2.5e6 < last.speed_bps < 1e7 and last.eta_s > 0


def test_queue_runs_at_most_max_parallel_downloads(settings, hub):
    manager = ModelManager(dataclasses.replace(settings, max_parallel_downloads=1))
    hub.faults.set(path=BIG_FILE, throttle_bps=2_000_000)
    first = manager.download(BIG)
    wait_for(lambda: manager.get(first.model_id).current_file)
    second = manager.download("tiny/gpt2")
    wait_for(lambda: manager.get(second.model_id).status == "pending" and manager.get(second.model_id).worker)
    time.sleep(0.5)
    assert manager.get(second.model_id).status == "pending"

    manager.cancel(first.model_id)
    assert second.wait(30).status == "ready"
    manager.close()


def test_concurrent_downloads_of_one_repo_join_one_job(settings, hub, monkeypatch):
    hub.faults.set(path="/cdn/", throttle_bps=300_000)
    managers = [ModelManager(settings) for _ in range(2)]
    handles: list[Any] = [None, None]

    def start(index: int) -> None:
        handles[index] = managers[index].download("tiny/gpt2")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setenv("MISTUDIO_DB_URL", settings.db_url)
    monkeypatch.setenv("MISTUDIO_CACHE_DIR", str(settings.cache_dir))
    cli = subprocess.run([str(Path(sys.executable).with_name("mistudio")), "download", "tiny/gpt2", "--json"],
                         capture_output=True, text=True, timeout=60)

    records = [handle.wait(30) for handle in handles]
    assert cli.returncode == 0, cli.stderr
    assert {r.id for r in records} == {json.loads(cli.stdout)["id"]}
    assert len(cdn_gets(hub)) == 1
    assert len(managers[0].list()) == 1
    for manager in managers:
        manager.close()


def test_a_worker_is_alive_from_the_moment_it_is_spawned():
    for _ in range(10):  # before the fix, most spawns looked dead for a moment
        child = subprocess.Popen([sys.executable, "-m", "mistudio_jupyter.core.downloads.worker", "x"],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        alive = worker_alive(ModelRecord(worker=f"{socket.gethostname()}:{child.pid}"), heartbeat_timeout_s=30)
        child.stdin.close()  # told nothing, it exits at once
        child.wait()
        assert alive, "a worker still being exec'd was taken for dead"
        assert not worker_alive(ModelRecord(worker=f"{socket.gethostname()}:{child.pid}"), heartbeat_timeout_s=30)


def test_a_worker_that_finished_is_not_marked_interrupted_from_a_stale_read(manager):
    gone = f"{socket.gethostname()}:{os.getpid()}"  # a live process, but not a download worker
    record, _ = manager.catalog.add("tiny/gpt2", status="downloading", worker=gone)
    stale = manager.catalog.get(record.id)
    manager.catalog.heartbeat(record.id, gone, status="ready")  # its last write, then it exits

    assert manager.downloads.refresh(stale).status == "ready"
    assert manager.catalog.get(record.id).status == "ready"


# --- tokens and gated repos --------------------------------------------------------------------


def test_a_token_without_access_fails_the_download_with_its_code(manager, hub):
    with pytest.raises(GatedNotApproved) as raised:
        manager.download("tiny/gated", token="hf_test_ungranted").wait(60)
    assert raised.value.code == "gated_not_approved" and f"{hub.url}/tiny/gated" in raised.value.message
    assert manager.list()[0].error_code == "gated_not_approved"  # resumable once access is granted


# --- downloads that cannot start leave nothing behind ----------------------------------------------


def model_info_calls(hub) -> list[Any]:
    return [r for r in hub.log if r.path.startswith("/api/models/")]


@pytest.mark.parametrize("repo_id, revision, token, error", [
    ("tiny/gtp2", None, None, RepoNotFound),  # a typo
    ("tiny/gpt2", "no-such-branch", None, RevisionNotFound),
    ("tiny/gated", None, None, GatedLoginRequired),
    ("tiny/gated", None, "hf_test_bad", InvalidToken),
])
def test_a_download_that_cannot_start_raises_at_once_and_adds_no_entry(manager, hub, repo_id, revision, token, error):
    with pytest.raises(error):
        manager.download(repo_id, revision=revision, token=token)
    assert manager.list() == []
    assert len(model_info_calls(hub)) == 1, "one Hub round trip decides it"


def test_adding_checks_the_hub_but_lets_a_gated_repo_in(manager, hub):
    with pytest.raises(RepoNotFound):
        manager.add("tiny/gtp2")
    assert manager.list() == []
    gated = manager.add("tiny/gated")  # catalogued before access: its download brings the token
    with pytest.raises(GatedLoginRequired):
        manager.download(gated.id)
    record = manager.get(gated.id)
    assert (record.status, record.worker, record.error_code) == ("pending", None, None)


def test_cli_download_of_a_typo_answers_repo_not_found_and_lists_nothing(settings, hub):
    env = {**os.environ, "MISTUDIO_DB_URL": settings.db_url, "MISTUDIO_CACHE_DIR": str(settings.cache_dir)}

    def mistudio(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mistudio_jupyter", *argv, "--json"], capture_output=True,
                              text=True, timeout=60, env=env)

    failed = mistudio("download", "tiny/gtp2")
    assert failed.returncode == 1 and json.loads(failed.stderr)["error"]["code"] == "repo_not_found"
    listed = mistudio("list")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_token_never_reaches_argv_catalog_or_logs(manager, settings, hub, caplog):
    token = "hf_test_good"
    hub.faults.set(path="/cdn/", throttle_bps=1_000_000)
    handle = manager.download("tiny/gated", token=token)
    pid = wait_for(lambda: local_worker_pid(manager.get(handle.model_id)))
    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    record = handle.wait(60)

    assert record.status == "ready" and record.gated
    assert b"mistudio_jupyter.core.downloads.worker" in argv and token.encode() not in argv + environ
    with manager.catalog.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM models")).fetchall()
    assert token not in repr(rows)
    assert token not in (log_dir() / f"{handle.model_id}.log").read_text()
    assert token not in caplog.text
    resolve = [r for r in hub.log if "/resolve/" in r.path and r.path.endswith(BIG_FILE)]
    assert resolve[0].headers.get("Authorization") == f"Bearer {token}"
    assert "Authorization" not in cdn_gets(hub)[0].headers  # dropped when the redirect left the Hub


# --- delete and sweep --------------------------------------------------------------------------


def test_delete_frees_exactly_the_unshared_blobs(manager, settings, fixture_repos):
    main = manager.download("tiny/gpt2").wait(60)
    shared = manager.download("tiny/gpt2", quantization="bnb-4bit").wait(60)
    dev = manager.download("tiny/gpt2", revision="dev").wait(60)
    assert shared.file_path == main.file_path and dev.commit != main.commit

    assert manager.delete(shared.id) == {"id": shared.id, "freed_bytes": 0}  # same commit as `main`
    assert manager.delete(dev.id) == {"id": dev.id, "freed_bytes": 0}  # every blob also in main
    assert Path(main.file_path, "model.safetensors").read_bytes()
    assert manager.delete(main.id) == {"id": main.id, "freed_bytes": main.size_bytes}
    assert not RepoCache(settings.cache_dir, "tiny/gpt2").root.exists()
    assert manager.list() == []


def test_deleting_a_download_in_progress_is_a_conflict(manager, settings, fixture_repos, hub):
    etag = fixture_repos[BIG].files[BIG_FILE].etag
    hub.faults.set(path=BIG_FILE, throttle_bps=2_000_000)
    handle = manager.download(BIG)
    wait_for(lambda: partial_size(settings, BIG, etag) > 0)
    with pytest.raises(Conflict):
        manager.delete(handle.model_id)
    manager.cancel(handle.model_id)
    assert manager.delete(handle.model_id)["freed_bytes"] > 0  # its partial file
    assert not list(RepoCache(settings.cache_dir, BIG).partials())


def test_prune_removes_orphaned_partials_but_not_live_ones(manager, settings):
    from filelock import FileLock

    repo = RepoCache(settings.cache_dir, "tiny/orphan")
    blobs = repo.root / "blobs"
    blobs.mkdir(parents=True)
    ours, theirs, live = blobs / f"{'a' * 40}{PARTIAL_SUFFIX}", blobs / f"{'b' * 64}.0123abcd.incomplete", \
        blobs / f"{'c' * 40}{PARTIAL_SUFFIX}"
    for path, size in ((ours, 100), (theirs, 200), (live, 300)):
        path.write_bytes(bytes(size))
    repo.lock("c" * 40).parent.mkdir(parents=True, exist_ok=True)
    assert manager.cache_info()["partial_bytes"] == 600

    with FileLock(str(repo.lock("c" * 40))):  # a writer is busy with this one
        result = manager.prune_cache()

    assert sorted(result["removed"]) == sorted([str(ours), str(theirs)]) and result["freed_bytes"] == 300
    assert live.exists()


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_commands(settings, hub, monkeypatch, capsys):
    from mistudio_jupyter.cli import main

    monkeypatch.setenv("MISTUDIO_DB_URL", settings.db_url)
    monkeypatch.setenv("MISTUDIO_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setenv("MY_TOKEN", "hf_test_good")

    def run(*argv: str) -> dict[str, Any]:
        assert main([*argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    added = run("add", "tiny/gated", "--quantization", "bnb-4bit")
    assert added["status"] == "pending" and added["quantization"] == "bnb-4bit"
    hub.faults.set(path="/cdn/", throttle_bps=200_000)
    started = run("download", added["id"], "--token-env", "MY_TOKEN", "--detach")
    assert started["id"] == added["id"] and started["status"] in ("pending", "downloading")
    assert run("cancel", added["id"], "--discard")["status"] == "cancelled"
    hub.faults.reset()
    assert run("resume", added["id"], "--token-env", "MY_TOKEN")["status"] == "ready"
    assert run("show", "tiny/gated")["id"] == added["id"]
    assert run("delete", added["id"])["freed_bytes"] > 0
    assert main(["resume", added["id"], "--json"]) == 1
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "not_found"
