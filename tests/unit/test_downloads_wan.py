"""Downloads behind a wide-area network (the test Hub's WAN mode): a cap per connection, a shared
link, a round trip per request, slow edges, 429s and expiring CDN URLs. Byte-identical results,
loadable offline, with the habits of a real CDN handled."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mistudio_jupyter.core.downloads.engine import MEMORY_PER_STREAM_BYTES
from mistudio_jupyter.core.downloads.partial import BLOCK_BYTES
from mistudio_jupyter.core.jobs import local_worker_pid
from mistudio_jupyter.core.service import ModelManager
from tests.hubserver import HubServer, build_fixtures, default_root
from tests.hubserver.wan import WanProfile
from tests.polling import wait_for

BIG = "tiny/big"
BIG_FILE = "model.safetensors"
# 50 MB behind 2 MB/s per connection and a 24 MB/s link: one stream would take 25 s.
WAN = WanProfile(per_conn_bps=2e6, link_bps=24e6, rtt_ms=20)


pytestmark = [pytest.mark.usefixtures("no_download_summary"), pytest.mark.each_backend]


def requested(record: Any) -> tuple[int, int]:
    """The `[start, end)` a ranged GET asked for."""
    first, last = record.range.split("=")[1].split("-")
    return int(first), int(last) + 1


def test_a_big_file_uses_many_streams_and_arrives_byte_identical(manager: Any, hub: Any, fixture_repos: Any) -> None:
    hub.faults.wan = WAN

    record = manager.download(BIG).wait(120)

    gets = hub.cdn_gets(BIG_FILE)
    big = fixture_repos[BIG].files[BIG_FILE]
    assert record.status == "ready" and len(gets) >= 8
    assert Path(record.file_path, BIG_FILE).read_bytes() == big.read_bytes()
    assert sum(r.bytes_sent for r in gets) <= big.size * 1.02  # splits waste at most what was in flight


def test_sharded_and_small_files_arrive_together_and_load_offline(
    manager: Any, hub: Any, fixture_repos: Any, settings: Any
) -> None:
    hub.faults.wan = dataclasses.replace(WAN, rtt_ms=30)

    record = manager.download("tiny/llama-sharded").wait(120)

    repo = fixture_repos["tiny/llama-sharded"]
    for path in ("config.json", "tokenizer.json", "model.safetensors.index.json", "model-00003-of-00006.safetensors"):
        assert Path(record.file_path, path).read_bytes() == repo.files[path].read_bytes()
    script = (
        "import sys, transformers; transformers.AutoModelForCausalLM.from_pretrained("
        "'tiny/llama-sharded', cache_dir=sys.argv[1], local_files_only=True)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script, str(settings.cache_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]


def test_a_slow_edge_is_overtaken(manager: Any, hub: Any, fixture_repos: Any) -> None:
    """Every third connection runs at 1/8 speed: the ranges it holds are split and the second halves
    fetched by other streams, so it does not set the end of the download."""
    hub.faults.wan = dataclasses.replace(WAN, slow_every=3)

    record = manager.download(BIG).wait(120)

    assert Path(record.file_path, BIG_FILE).read_bytes() == fixture_repos[BIG].files[BIG_FILE].read_bytes()
    spans = [requested(get) for get in hub.cdn_gets(BIG_FILE) if get.status == 206]
    taken_over = [(a, b) for a in spans for b in spans if a[0] < b[0] < a[1]]
    assert taken_over, f"no range was split and taken over: {spans}"


def test_429_halves_the_streams_and_the_download_completes(manager: Any, hub: Any, fixture_repos: Any) -> None:
    hub.faults.wan = dataclasses.replace(WAN, max_in_flight=4, retry_after_s=1)

    record = manager.download(BIG).wait(180)

    statuses = [r.status for r in hub.cdn_gets(BIG_FILE)]
    assert 429 in statuses and statuses.count(206) >= 1
    assert Path(record.file_path, BIG_FILE).read_bytes() == fixture_repos[BIG].files[BIG_FILE].read_bytes()


def test_an_expiring_cdn_url_is_resolved_again_mid_file(settings: Any, hub: Any, fixture_repos: Any) -> None:
    """Two streams of 8 MiB ranges at 4 MB/s: every range after the first pair starts after the CDN
    URLs it was given have expired."""
    manager = ModelManager(dataclasses.replace(settings, max_connections=2))
    hub.faults.wan = WanProfile(per_conn_bps=4e6, rtt_ms=20, url_ttl_s=1.0)

    record = manager.download(BIG).wait(120)
    manager.close()

    gets = hub.cdn_gets(BIG_FILE)
    assert 403 in [r.status for r in gets], "no URL expired during the download"
    assert Path(record.file_path, BIG_FILE).read_bytes() == fixture_repos[BIG].files[BIG_FILE].read_bytes()


def test_hf_cache_prune_during_a_download_changes_nothing(
    manager: Any, hub: Any, fixture_repos: Any, settings: Any
) -> None:
    """`hf cache prune` removes incomplete files and revisions no ref names: a running download's
    partials live where it does not look, and its ref is written first."""
    hub.faults.wan = WAN
    handle = manager.download(BIG)
    wait_for(lambda: (manager.get(handle.model_id).bytes_done or 0) > 10_000_000, 60, what="10 MB")
    hf = Path(sys.executable).with_name("hf")
    pruned = subprocess.run(
        [str(hf), "cache", "prune", "--cache-dir", str(settings.cache_dir), "--yes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pruned.returncode == 0, pruned.stderr

    record = handle.wait(120)

    big = fixture_repos[BIG].files[BIG_FILE]
    assert Path(record.file_path, BIG_FILE).read_bytes() == big.read_bytes()
    assert sum(r.bytes_sent for r in hub.cdn_gets(BIG_FILE)) <= big.size * 1.02
    verified = subprocess.run(
        [str(hf), "cache", "verify", BIG, "--cache-dir", str(settings.cache_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


# What a worker holds besides its buffers: the interpreter, httpx, SQLAlchemy, the hash threads.
WORKER_BASE_BYTES = 200 << 20


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)


def test_worker_memory_is_bounded_by_its_streams_not_by_the_file(settings: Any, tmp_path: Path) -> None:
    """1 GiB over 32 streams: the worker's resident memory stays within its base plus the receive
    blocks and hash-ahead budget that 32 streams may hold, far below the file's size."""
    streams = 32
    repos = build_fixtures(default_root(), bench=True)
    with HubServer(default_root(), repos=repos) as hub:
        hub.faults.wan = WanProfile(rtt_ms=10)  # a round trip per request: a CDN's path, so many streams
        manager = ModelManager(dataclasses.replace(settings, hub_endpoint=hub.url, max_connections=streams))
        handle = manager.download("bench/1gb")
        pid = wait_for(lambda: local_worker_pid(manager.get(handle.model_id)), what="the worker")
        peak = connections = 0
        while not handle.done:
            peak = max(peak, rss_bytes(pid))
            connections = max(connections, manager.get(handle.model_id).connections or 0)
            time.sleep(0.05)
        record = handle.wait(10)
        manager.close()

    bound = WORKER_BASE_BYTES + (16 + 2 * streams) * BLOCK_BYTES + streams * MEMORY_PER_STREAM_BYTES
    print(f"\npeak RSS {peak / 2**20:.0f} MiB over {connections} streams (bound {bound / 2**20:.0f} MiB)")
    assert record.status == "ready" and connections >= 16
    assert 0 < peak <= bound
