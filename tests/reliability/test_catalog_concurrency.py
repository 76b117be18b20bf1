"""Two processes on one catalog (SQLite, and PostgreSQL) — the Jupyter server and the `mistudio` CLI —
racing downloads, cancels, resumes and deletes; and a process SIGKILLed in the middle of catalog writes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mistudio_jupyter.core.catalog import Catalog
from mistudio_jupyter.core.downloads.cache import RepoCache
from tests.hubserver import HubServer, RepoSpec
from tests.polling import wait_for

from .conftest import assert_fetched_once, lfs_file
from .live import REPO_ROOT, JupyterServer, kill_workers, partials, worker_pids

pytestmark = pytest.mark.each_backend

REPOS = ("tiny/llama", "tiny/qwen2", "tiny/gemma")
DONE = {"ready", "failed", "cancelled", "interrupted"}


def cli(server: JupyterServer, *args: str, timeout: float = 60) -> tuple[int, Any, str]:
    """`mistudio ARGS --json` in its own process on the server's catalog and cache: (exit, JSON, stderr)."""
    env = {**server.env, "MISTUDIO_DB_URL": server.db_url, "MISTUDIO_CACHE_DIR": str(server.cache)}
    done = subprocess.run(
        [sys.executable, "-m", "mistudio_jupyter", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
    assert "Traceback" not in done.stderr, done.stderr
    payload = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, payload, done.stderr


def test_server_and_cli_race_downloads_then_deletes(
    hub: HubServer, fixture_repos: dict[str, RepoSpec], server: JupyterServer
) -> None:
    """For each of three repos the CLI and the REST API start the same download at the same moment:
    one catalog row and one transfer per repo, all ready. Then both delete every entry at the same
    moment: no 5xx, the bytes are freed exactly once, the catalog and the cache end empty."""
    hub.faults.set(path="/cdn/", throttle_bps=400_000)  # each ~0.5 MB weights file takes ~1.3 s

    def via_rest(repo_id: str) -> int:
        model = server.create(repo_id)
        return server.request("POST", f"/models/{model['id']}/download", {})[0]

    with ThreadPoolExecutor(2 * len(REPOS)) as pool:
        rest = [pool.submit(via_rest, repo) for repo in REPOS]
        shell = [pool.submit(cli, server, "download", repo, "--detach") for repo in REPOS]
        assert [f.result() for f in rest] == [202] * len(REPOS)
        assert [f.result()[0] for f in shell] == [0] * len(REPOS)

    listing = server.request("GET", "/models")[1]["models"]
    assert sorted(m["repo_id"] for m in listing) == sorted(REPOS), listing
    for model in listing:
        final = server.wait_status(model["id"], DONE, 60)
        assert final["status"] == "ready", final
        weights = lfs_file(fixture_repos, model["repo_id"])
        assert_fetched_once(hub, model["repo_id"], weights.size)

    sizes = {
        m["id"]: sum(p.stat().st_size for p in (RepoCache(server.cache, m["repo_id"]).root / "blobs").iterdir())
        for m in listing
    }
    with ThreadPoolExecutor(2 * len(listing)) as pool:
        rest_deletes = {m["id"]: pool.submit(server.request, "DELETE", f"/models/{m['id']}") for m in listing}
        cli_deletes = {m["id"]: pool.submit(cli, server, "delete", m["id"]) for m in listing}
        for model_id in sizes:
            status, body = rest_deletes[model_id].result()
            code, payload, _ = cli_deletes[model_id].result()
            assert status in (200, 404) and code in (0, 1), (status, body, code, payload)
            assert status == 200 or code == 0, "neither delete succeeded"
            freed = (body["freed_bytes"] if status == 200 else 0) + (payload["freed_bytes"] if code == 0 else 0)
            assert freed == sizes[model_id], "freed bytes counted twice or not at all"
    assert server.request("GET", "/models")[1]["models"] == []
    assert not [p for p in server.cache.rglob("blobs/*")]


def test_cli_cancel_is_not_lost_under_worker_heartbeats_and_resume_races_delete(
    hub: HubServer,
    fixture_repos: dict[str, RepoSpec],
    server: JupyterServer,
) -> None:
    """The server's worker writes its row every second; a cancel from the CLI (another process) still
    wins, and stays. Then a CLI resume and a REST delete race: whichever wins, no 5xx, and
    the end state is consistent (either the entry is gone and no worker runs, or it finishes)."""
    big = lfs_file(fixture_repos, "tiny/big")
    hub.faults.set(path="/cdn/", throttle_bps=4_000_000)  # 12 s: the CLI's cancel arrives well before the end
    model_id = server.create("tiny/big")["id"]
    assert server.request("POST", f"/models/{model_id}/download", {})[0] == 202
    server.wait_status(model_id, "downloading", 20)
    wait_for(lambda: server.record(model_id)["bytes_done"] > 0, 20, what="progress")
    code, record, err = cli(server, "cancel", model_id)
    assert code == 0, err
    assert record["status"] == "cancelled"
    wait_for(lambda: not worker_pids(server.db_url), 20, what="the worker to exit after writing `cancelled`")
    time.sleep(1.5)  # a lost update would show here: a late heartbeat putting `downloading` back
    after = server.record(model_id)
    assert after["status"] == "cancelled" and after["bytes_done"] < big.size

    with ThreadPoolExecutor(2) as pool:
        resumed = pool.submit(cli, server, "resume", model_id, "--detach")
        time.sleep(0.3)
        deleted = pool.submit(server.request, "DELETE", f"/models/{model_id}")
        code, _, err = resumed.result()
        status, body = deleted.result()
    assert code in (0, 1) and status in (200, 404, 409), (code, err, status, body)
    if status == 200:
        wait_for(lambda: not worker_pids(server.db_url), 10, what="no worker for a deleted entry")
        assert server.request("GET", f"/models/{model_id}")[0] == 404
        server.request("POST", "/cache/prune", {})
        assert partials(server.cache) == []
    else:
        final = server.wait_status(model_id, DONE, 60)
        assert final["status"] == "ready", final
    kill_workers(server.db_url)


WRITER = textwrap.dedent("""
    import sys, itertools
    from mistudio_jupyter.core.catalog import Catalog
    catalog = Catalog(sys.argv[1])
    record, _ = catalog.add("tiny/crash", status="downloading")
    print(record.id, flush=True)
    for i in itertools.count():
        catalog.update(record.id, bytes_done=i, bytes_total=10**9, current_file=f"f{i}")
        catalog.add(f"tiny/crash-{i}")
""")


def test_sigkill_during_catalog_writes_leaves_a_consistent_database(db_url: str, catalog_backend: str) -> None:
    """A process hammering the catalog (updates and inserts) is SIGKILLed three times: SQLite's
    integrity check passes, every row reads back whole, and the catalog keeps working."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    model_id = None
    for _ in range(3):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, db_url], stdout=subprocess.PIPE, text=True, env=env)
        assert writer.stdout is not None
        model_id = writer.stdout.readline().strip()
        time.sleep(0.4)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    if catalog_backend == "sqlite":
        with sqlite3.connect(db_url.split(":///", 1)[1]) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    catalog = Catalog(db_url)
    try:
        rows = catalog.list(limit=10_000)
        assert len(rows) > 3 and len({r.id for r in rows}) == len(rows)
        crashed = catalog.get(model_id)
        assert crashed.current_file == f"f{crashed.bytes_done}"  # both fields of one update, or neither
        catalog.update(model_id, status="interrupted")
        assert catalog.get(model_id).status == "interrupted"
        assert catalog.add("tiny/crash")[1] is False  # the unique key survived
    finally:
        catalog.close()


def test_concurrent_add_from_many_processes_makes_one_row(db_url: str) -> None:
    """Four processes add the same repo+options at once: one row, and every process gets its id."""
    Catalog(db_url).close()  # migrate first, as a server would
    script = (
        "import sys; from mistudio_jupyter.core.catalog import Catalog; "
        "print(Catalog(sys.argv[1]).add('tiny/gpt2', quantization='bnb-4bit')[0].id)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    barrier = threading.Barrier(4)

    def add() -> str:
        barrier.wait(30)
        return subprocess.run(
            [sys.executable, "-c", script, db_url], capture_output=True, text=True, env=env, timeout=60, check=True
        ).stdout.strip()

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: add(), range(4)))
    catalog = Catalog(db_url)
    try:
        assert len(set(ids)) == 1 and [r.id for r in catalog.list()] == ids[:1]
    finally:
        catalog.close()
