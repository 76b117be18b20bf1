"""Downloads end to end on a SQLite and a PostgreSQL catalog: real child processes, real huggingface_hub parts, the test
Hub with faults."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
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

from mistudio_jupyter.core.catalog import ModelRecord
from mistudio_jupyter.core.downloads.cache import RepoCache
from mistudio_jupyter.core.downloads.engine import CHUNK_BYTES
from mistudio_jupyter.core.downloads.journal import journal_path
from mistudio_jupyter.core.downloads.manager import log_dir
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
from mistudio_jupyter.core.jobs import local_worker_pid, worker_alive
from mistudio_jupyter.core.service import ModelManager
from tests.hubserver.wan import WanProfile
from tests.polling import wait_for

BIG = "tiny/big"
BIG_FILE = "model.safetensors"


pytestmark = [pytest.mark.usefixtures("no_download_summary"), pytest.mark.each_backend]


def on_disk(settings, repo_id: str, file) -> int:
    """Bytes of `file` written so far, as its journal (or its blob) says."""
    return RepoCache(settings.cache_dir, repo_id).bytes_on_disk(file)


def cancel_and_settle(handle, hub) -> None:
    """Cancel the job and wait until its worker has exited and the Hub has finished every request of it:
    none of its bytes can then count towards what a resume fetches."""
    handle.cancel()
    with pytest.raises(Cancelled):
        handle.wait(30)
    wait_for(lambda: all(r.finished for r in hub.log), timeout=10)


def worker_runs(pid: int) -> bool:
    """Whether download worker `pid` still runs (one that exited but was not reaped has no command line)."""
    try:
        return b"mistudio_jupyter.core.downloads.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


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
    assert set(got) == {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    }
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
    verify = subprocess.run(
        [*hf, "verify", "tiny/gpt2", "--cache-dir", str(settings.cache_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_ENDPOINT": hub.url},
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_sharded_repo_loads_with_transformers_offline_and_gets_its_summary(
    manager, settings, fixture_repos, monkeypatch
):
    monkeypatch.delenv("MISTUDIO_DOWNLOAD_SUMMARY")
    record = manager.download("tiny/llama-sharded").wait(120)

    got = snapshot_bytes(record)
    assert len([p for p in got if p.endswith(".safetensors")]) == 6
    assert got == expected_bytes(fixture_repos, "tiny/llama-sharded", record)
    assert record.family == "llama" and record.params and record.params > 0
    assert record.architecture is None  # `wait()` returns at `ready`, not after the summary (seconds of imports)
    deadline = time.monotonic() + 120  # the summary lands after `ready`, once the worker has built it
    while manager.get(record.id).architecture is None and time.monotonic() < deadline:
        time.sleep(0.2)
    summary = manager.get(record.id).to_dict()["summary"]
    assert summary["num_layers"] > 0 and summary["params"] == record.params

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        "tiny/llama-sharded", local_files_only=True, cache_dir=settings.cache_dir
    )
    AutoTokenizer.from_pretrained("tiny/llama-sharded", local_files_only=True, cache_dir=settings.cache_dir)
    assert sum(p.numel() for p in model.parameters()) == record.params


# --- resume, retries, verification -------------------------------------------------------------


def test_sigkill_at_half_then_resume_refetches_under_one_percent(manager, settings, fixture_repos, hub):
    big = fixture_repos[BIG].files[BIG_FILE]
    hub.faults.wan = WanProfile(per_conn_bps=1e6, rtt_ms=20)  # a CDN's path: many streams
    handle = manager.download(BIG)
    wait_for(lambda: on_disk(settings, BIG, big) >= big.size // 2, timeout=60)
    os.kill(local_worker_pid(manager.get(handle.model_id)), signal.SIGKILL)

    # from the dead pid: a third of the time a heartbeat would need to go stale
    wait_for(lambda: manager.get(handle.model_id).status == "interrupted", timeout=settings.heartbeat_timeout_s / 3)
    wait_for(lambda: all(r.finished for r in hub.cdn_gets(BIG_FILE)), timeout=10)
    first = sum(r.bytes_delivered for r in hub.cdn_gets(BIG_FILE))
    streams = len(hub.cdn_gets(BIG_FILE))
    hub.clear_log()
    hub.faults.reset()

    record = manager.resume(handle.model_id).wait(60)

    refetched = first + sum(r.bytes_sent for r in hub.cdn_gets(BIG_FILE)) - big.size
    print(
        f"\nkill at {first / big.size:.0%} over {streams} ranges: re-fetched {refetched} bytes "
        f"({refetched / big.size:.3%})"
    )
    assert record.status == "ready" and streams >= 4
    assert refetched <= big.size // 100
    assert (Path(record.file_path) / BIG_FILE).stat().st_size == big.size


def test_resume_with_another_stream_count_fetches_only_the_gaps(manager, settings, fixture_repos, hub):
    big = fixture_repos[BIG].files[BIG_FILE]
    hub.faults.wan = WanProfile(per_conn_bps=2e6, rtt_ms=20)
    handle = manager.download(BIG)
    wait_for(lambda: on_disk(settings, BIG, big) >= big.size // 3, timeout=60)
    cancel_and_settle(handle, hub)
    kept = on_disk(settings, BIG, big)
    hub.clear_log()
    hub.faults.reset()

    one_stream = ModelManager(dataclasses.replace(settings, max_connections=1))
    record = one_stream.resume(handle.model_id).wait(60)
    one_stream.close()

    assert sum(r.bytes_sent for r in hub.cdn_gets(BIG_FILE)) == big.size - kept
    assert (Path(record.file_path) / BIG_FILE).read_bytes() == big.read_bytes()


def test_a_paused_download_whose_partials_were_pruned_starts_again_and_says_so(manager, settings, fixture_repos, hub):
    big = fixture_repos[BIG].files[BIG_FILE]
    hub.faults.wan = WanProfile(per_conn_bps=2e6, rtt_ms=20)
    handle = manager.download(BIG)
    wait_for(lambda: (manager.get(handle.model_id).bytes_done or 0) > big.size // 4, timeout=60)
    cancel_and_settle(handle, hub)
    assert manager.prune_cache()["freed_bytes"] > 0
    hub.clear_log()
    hub.faults.reset()

    record = manager.resume(handle.model_id).wait(60)

    assert "no longer on disk" in (record.note or "") and "fetched again" in record.note
    assert sum(r.bytes_sent for r in hub.cdn_gets(BIG_FILE)) == big.size
    assert (Path(record.file_path) / BIG_FILE).read_bytes() == big.read_bytes()


def test_cut_connection_resumes_inside_the_same_job(manager, fixture_repos, hub):
    hub.faults.set(path="/cdn/", cut_after_bytes=300_000, cut_times=1)
    record = manager.download("tiny/gpt2").wait(60)

    gets = hub.cdn_gets(BIG_FILE)
    size = fixture_repos["tiny/gpt2"].files[BIG_FILE].size
    assert record.status == "ready" and len(gets) == 2
    assert gets[1].range == f"bytes=300000-{size - 1}"
    assert sum(r.bytes_sent for r in gets) == size


def test_server_errors_are_retried(manager, hub):
    hub.faults.set(path="/cdn/", fail_requests=1, fail_times=2, fail_status=503)
    record = manager.download("tiny/gpt2").wait(60)

    assert record.status == "ready"
    assert [r.status for r in hub.cdn_gets(BIG_FILE)] == [503, 503, 206]


def test_corrupt_bytes_never_reach_blobs(manager, settings, fixture_repos, hub):
    hub.faults.set(path="/cdn/", corrupt=True)
    with pytest.raises(DownloadFailed, match="failed verification twice"):
        manager.download("tiny/gpt2").wait(60)

    etag = fixture_repos["tiny/gpt2"].files[BIG_FILE].etag
    repo = RepoCache(settings.cache_dir, "tiny/gpt2")
    assert len(hub.cdn_gets(BIG_FILE)) == 2  # discarded, fetched again once, then a clear failure
    assert (
        not repo.blob(etag).exists()
        and not repo.partial(etag).exists()
        and not journal_path(repo.partial(etag)).exists()
    )
    assert manager.get(manager.list()[0].id).error_code == "download_failed"


def test_corrupt_partial_on_disk_is_discarded_and_fetched_again(manager, settings, fixture_repos, hub):
    file = fixture_repos["tiny/llama"].files[BIG_FILE]
    partial = RepoCache(settings.cache_dir, "tiny/llama").partial(file.etag)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(bytes(file.size))

    record = manager.download("tiny/llama").wait(60)

    assert record.status == "ready" and [r.range for r in hub.cdn_gets(BIG_FILE)] == [f"bytes=0-{file.size - 1}"]
    assert (Path(record.file_path) / BIG_FILE).read_bytes() == file.read_bytes()


def test_a_server_that_ignores_range_restarts_the_file_from_its_first_byte(manager, settings, fixture_repos, hub):
    """Also: the partial of the earlier single-stream engine (in `blobs/`, no journal) is taken over."""
    file = fixture_repos["tiny/llama"].files[BIG_FILE]
    legacy = RepoCache(settings.cache_dir, "tiny/llama").legacy_partial(file.etag)
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(file.read_bytes()[: file.size * 2 // 5])
    hub.faults.set(path="/cdn/", ignore_range=True)

    record = manager.download("tiny/llama").wait(60)

    (get,) = hub.cdn_gets(BIG_FILE)  # one transfer: restarted in place, not failed verification and fetched again
    assert get.range == f"bytes={file.size * 2 // 5}-{file.size - 1}" and get.status == 200
    assert get.bytes_sent == file.size and not legacy.exists()
    assert record.status == "ready" and record.bytes_done == record.bytes_total
    assert (Path(record.file_path) / BIG_FILE).read_bytes() == file.read_bytes()


def test_insufficient_disk_fails_before_any_byte(manager, settings, hub, monkeypatch):
    monkeypatch.setenv("MISTUDIO_FREE_DISK_BYTES", "1000")
    with pytest.raises(InsufficientDisk, match=rf"needs 537 MB, 1 KB free in {settings.cache_dir}"):
        manager.download("tiny/gpt2").wait(60)

    fetched = [r.path.rsplit("/", 1)[1] for r in hub.log if "/resolve/" in r.path or r.path.startswith("/cdn/")]
    assert fetched == ["config.json"]  # read by the file plan (is it remote code?), never into the cache
    assert not (RepoCache(settings.cache_dir, "tiny/gpt2").root / "blobs").exists()
    assert manager.list()[0].to_dict()["error"]["code"] == "insufficient_disk"


# --- cancel, progress, queue, joining ----------------------------------------------------------


def test_cancel_stops_the_worker_by_signal_or_catalog_flag_and_discard_removes_partials(
    manager, settings, fixture_repos, hub
):
    """How fast a cancel lands is a benchmark figure (bench_download: cancel latency); here, that it
    lands, with many streams running."""
    big = fixture_repos[BIG].files[BIG_FILE]
    hub.faults.wan = WanProfile(per_conn_bps=500_000, rtt_ms=20)  # a CDN's path: many streams
    handle = manager.download(BIG)
    wait_for(lambda: on_disk(settings, BIG, big) > 0 and (manager.get(handle.model_id).connections or 0) >= 4)

    pid = local_worker_pid(manager.get(handle.model_id))
    record = handle.cancel()
    assert record.status == "cancelled"
    wait_for(lambda: not worker_runs(pid), timeout=20, what="the worker to exit")
    with pytest.raises(Cancelled):
        handle.wait(5)
    kept = on_disk(settings, BIG, big)
    assert kept > 0

    handle = manager.resume(handle.model_id)
    wait_for(lambda: on_disk(settings, BIG, big) > kept)
    pid = local_worker_pid(manager.get(handle.model_id))
    manager.catalog.request_cancel(handle.model_id)  # as another host would: the flag only, no signal
    wait_for(lambda: manager.catalog.get(handle.model_id).status == "cancelled", timeout=20, what="cancelled")
    wait_for(lambda: not worker_runs(pid), timeout=20, what="the worker to exit")

    manager.cancel(handle.model_id, discard=True)
    assert not list(RepoCache(settings.cache_dir, BIG).partials())


def test_progress_reaches_the_catalog_once_a_second_never_more_often(settings, hub):
    """The gaps are read from the writer's own timestamps: load can stretch them, never shorten them
    (the 1% spares wall-clock slew). One stream, so the speed is the throttle's."""
    manager = ModelManager(dataclasses.replace(settings, max_connections=1))
    throttle_bps = 5_000_000
    hub.faults.set(path=BIG_FILE, throttle_bps=throttle_bps)
    handle = manager.download(BIG)
    writes: list[Any] = []

    def four_progress_writes() -> bool:
        record = manager.catalog.get(handle.model_id)
        if record.current_file == BIG_FILE and (not writes or writes[-1].updated_at != record.updated_at):
            writes.append(record)
        return len(writes) >= 4

    wait_for(four_progress_writes, timeout=60, what="four progress writes")
    manager.cancel(handle.model_id, discard=True)

    gaps = [(later.updated_at - earlier.updated_at).total_seconds() for earlier, later in zip(writes, writes[1:])]
    assert all(0.99 <= gap <= 10.0 for gap in gaps), gaps
    done = [record.bytes_done for record in writes]
    assert done == sorted(set(done)) and 0 < done[-1] < writes[-1].bytes_total
    assert 0 < writes[-1].speed_bps <= 2 * throttle_bps and writes[-1].eta_s > 0
    manager.close()


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
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("mistudio")), "download", "tiny/gpt2", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    records = [handle.wait(30) for handle in handles]
    assert cli.returncode == 0, cli.stderr
    assert {r.id for r in records} == {json.loads(cli.stdout)["id"]}
    assert len(hub.cdn_gets(BIG_FILE)) == 1
    assert len(managers[0].list()) == 1
    for manager in managers:
        manager.close()


def test_a_worker_is_alive_from_the_moment_it_is_spawned():
    for _ in range(10):  # before the fix, most spawns looked dead for a moment
        child = subprocess.Popen(
            [sys.executable, "-m", "mistudio_jupyter.core.downloads.worker", "x"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
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


@pytest.mark.parametrize(
    "repo_id, revision, token, error",
    [
        ("tiny/gtp2", None, None, RepoNotFound),  # a typo
        ("tiny/gpt2", "no-such-branch", None, RevisionNotFound),
        ("tiny/gated", None, None, GatedLoginRequired),
        ("tiny/gated", None, "hf_test_bad", InvalidToken),
    ],
)
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
        return subprocess.run(
            [sys.executable, "-m", "mistudio_jupyter", *argv, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

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
    assert token not in (log_dir(manager.settings) / f"{handle.model_id}.log").read_text()
    assert token not in caplog.text
    resolve = [r for r in hub.log if "/resolve/" in r.path and r.path.endswith(BIG_FILE)]
    assert resolve[0].headers.get("Authorization") == f"Bearer {token}"
    assert "Authorization" not in hub.cdn_gets(BIG_FILE)[0].headers  # dropped when the redirect left the Hub


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


def test_delete_and_cache_size_look_again_when_another_process_removes_a_repo_meanwhile(manager, settings, monkeypatch):
    """Another process (a delete, `hf cache rm`) removes a repo folder while the cache is read: the
    read starts over instead of failing the delete with FileNotFoundError."""
    ready = manager.download("tiny/gpt2").wait(60)
    real_iterdir = Path.iterdir

    def removed_while_listed(path: Path):
        # Gone between the look at the folder and the listing of it: a repo, or its partials' folder.
        if path.name == "snapshots" and path.parent.name.startswith("models--other--") and path.exists():
            shutil.rmtree(path.parent)
        if path.name.startswith("models--other--") and path.parent.name == "partials" and path.exists():
            shutil.rmtree(path)
        return real_iterdir(path)

    monkeypatch.setattr(Path, "iterdir", removed_while_listed)
    for name in ("a", "b"):
        (settings.cache_dir / f"models--other--{name}" / "snapshots" / ("0" * 40)).mkdir(parents=True)
        (settings.cache_dir / f"models--other--{name}" / "blobs").mkdir()
        RepoCache(settings.cache_dir, f"other/{name}").partials_dir.mkdir(parents=True)

    assert manager.cache_info()["size_bytes"] == ready.size_bytes
    (settings.cache_dir / "models--other--c" / "snapshots" / ("0" * 40)).mkdir(parents=True)
    assert manager.delete(ready.id) == {"id": ready.id, "freed_bytes": ready.size_bytes}


def test_deleting_a_download_in_progress_is_a_conflict(manager, settings, fixture_repos, hub):
    hub.faults.set(path=BIG_FILE, throttle_bps=500_000)
    handle = manager.download(BIG)
    wait_for(lambda: on_disk(settings, BIG, fixture_repos[BIG].files[BIG_FILE]) > 0)
    with pytest.raises(Conflict):
        manager.delete(handle.model_id)
    manager.cancel(handle.model_id)
    assert manager.delete(handle.model_id)["freed_bytes"] > 0  # its partial file
    assert not list(RepoCache(settings.cache_dir, BIG).partials())


def test_prune_removes_orphaned_partials_but_not_live_ones(manager, settings):
    from filelock import FileLock

    repo = RepoCache(settings.cache_dir, "tiny/orphan")
    (repo.root / "blobs").mkdir(parents=True)
    repo.partials_dir.mkdir(parents=True)
    ours, older, theirs, live = (
        repo.partial("a" * 40),
        repo.legacy_partial("d" * 40),
        repo.root / "blobs" / f"{'b' * 64}.0123abcd.incomplete",
        repo.partial("c" * 40),
    )
    for path, size in ((ours, 100), (older, 50), (theirs, 200), (live, 300)):
        path.write_bytes(bytes(size))
    journal_path(ours).write_text("0 100\n")
    repo.lock("c" * 40).parent.mkdir(parents=True, exist_ok=True)
    assert manager.cache_info()["partial_bytes"] == 650

    with FileLock(str(repo.lock("c" * 40))):  # a writer is busy with this one
        result = manager.prune_cache()

    assert sorted(result["removed"]) == sorted(map(str, (ours, older, theirs))) and result["freed_bytes"] == 350
    assert live.exists() and not journal_path(ours).exists()


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
    assert run("add", "tiny/gated", "--as", "bnb-4bit")["id"] == added["id"]  # the estimate's name for it
    assert (run("add", "tiny/gpt2", "--as", "fp16")["dtype"]) == "float16"
    assert main(["add", "tiny/gpt2", "--as", "fp16", "--quantization", "bnb-8bit", "--json"]) == 1
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "invalid_argument"
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


def test_on_a_local_path_one_stream_fetches_the_file_whole_in_order(manager, fixture_repos, hub):
    """Loopback answers at once: the CPU, not the connection, is the limit. A file is fetched whole in
    one request once the path is known to be local, else its first range (which also tells whether the
    server honours Range) is followed by the rest of it in one request."""
    record = manager.download(BIG).wait(60)

    size = fixture_repos[BIG].files[BIG_FILE].size
    assert record.status == "ready"
    ranges = [r.range for r in hub.cdn_gets(BIG_FILE)]
    assert ranges in ([f"bytes=0-{size - 1}"], [f"bytes=0-{CHUNK_BYTES - 1}", f"bytes={CHUNK_BYTES}-{size - 1}"])
