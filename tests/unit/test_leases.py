"""Leases: a process that has a model loaded keeps its entry from being deleted under it."""

from __future__ import annotations

import datetime as dt
import gc
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from mistudio_jupyter import cli, release
from mistudio_jupyter.core.catalog import Lease
from mistudio_jupyter.core.errors import Conflict, NotFound
from mistudio_jupyter.core.records import utcnow
from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from tests.hubserver import HubServer
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[2]
HEARTBEAT_TIMEOUT_S = 1.5  # short, so that a killed holder's lease goes stale soon

HOLDER = """
import sys
from mistudio_jupyter.core.service import ModelManager
manager = ModelManager(cache_dir=sys.argv[1], db_url=sys.argv[2], heartbeat_timeout_s=float(sys.argv[3]))
model, _ = manager.load(sys.argv[4], device_map="cpu")
print("loaded", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def settings(hub: HubServer, hf_cache: Path, db_url: str, tmp_path: Path, no_download_summary: None) -> Settings:
    return Settings.from_env(
        cache_dir=hf_cache,
        db_url=db_url,
        hub_endpoint=hub.url,
        runtime_dir=tmp_path / "runtime",
        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
    )


@pytest.fixture
def ready_id(manager: ModelManager) -> str:
    return manager.download("tiny/gpt2").wait(60).id


@pytest.fixture
def holder(settings: Settings, ready_id: str) -> Iterator[subprocess.Popen[str]]:
    """A child process that has loaded the entry and holds it until a line arrives on its stdin."""
    arguments = [str(settings.cache_dir), settings.db_url, str(HEARTBEAT_TIMEOUT_S), ready_id]
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *arguments], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "loaded\n"
        yield process
    finally:
        process.kill()
        process.wait()


def _deleted(manager: ModelManager, model_id: str) -> bool:
    try:
        manager.delete(model_id)
    except Conflict:
        return False
    return True


@pytest.mark.each_backend
def test_a_loaded_model_blocks_its_delete_until_its_process_exits(manager, ready_id, holder):
    snapshot = Path(manager.get(ready_id).file_path)
    with pytest.raises(Conflict, match=rf"in use by \S+@\S+ pid {holder.pid} process since .* UTC") as refused:
        manager.delete(ready_id)
    assert refused.value.code == "conflict" and "force" in refused.value.message
    held = [lease.holder.split()[-3:] for lease in manager.leases.live(ready_id)]
    assert held == [["pid", str(holder.pid), "process"]]
    assert snapshot.is_dir()

    holder.communicate("exit\n", timeout=30)  # a clean exit releases at once: no wait for the heartbeat
    assert manager.leases.live(ready_id) == []
    assert manager.delete(ready_id)["freed_bytes"] > 0
    assert not snapshot.exists()


@pytest.mark.each_backend
def test_a_killed_holder_stops_counting_once_its_heartbeat_is_stale(manager, ready_id, holder):
    with pytest.raises(Conflict):
        manager.delete(ready_id)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    wait_for(lambda: _deleted(manager, ready_id), 10 * HEARTBEAT_TIMEOUT_S, 0.1, "the killed holder's lease to expire")
    with pytest.raises(NotFound):
        manager.get(ready_id)


@pytest.mark.each_backend
def test_the_rows_of_leases_stale_for_a_day_go_with_the_next_lease(manager, ready_id, settings):
    """A crashed holder's row stops counting at once; the first lease taken a day later removes it."""
    crashed, recent = (manager.leases.acquire(ready_id, name) for name in ("crashed kernel", "suspended kernel"))
    engine = create_engine(settings.db_url)
    try:
        with engine.begin() as db:
            for lease, age in ((crashed, dt.timedelta(days=1, minutes=1)), (recent, dt.timedelta(hours=23))):
                db.execute(update(Lease).where(Lease.id == lease.id).values(heartbeat_at=utcnow() - age))

        manager.leases.acquire(ready_id, "new kernel")

        with engine.connect() as db:
            holders = db.execute(select(Lease.holder).order_by(Lease.holder)).scalars().all()
    finally:
        engine.dispose()
    assert holders == ["new kernel", "suspended kernel"]
    manager.leases.renew(recent.id)  # a suspended process that comes back holds its lease again
    assert [lease.holder for lease in manager.leases.live(ready_id)] == ["suspended kernel", "new kernel"]


@pytest.mark.each_backend
def test_force_deletes_a_leased_entry_and_its_leases(manager, ready_id, holder):
    assert manager.leases.live(ready_id)
    assert manager.delete(ready_id, force=True)["freed_bytes"] > 0
    assert manager.leases.live(ready_id) == []
    assert holder.poll() is None  # the holder is not stopped; its model stays in its memory


def test_release_or_garbage_collection_ends_the_lease(manager, ready_id):
    model, _ = manager.load(ready_id, device_map="cpu")
    assert len(manager.leases.live(ready_id)) == 1
    assert release(model) and not release(model)
    assert manager.leases.live(ready_id) == []

    model, _ = manager.load(ready_id, device_map="cpu")
    assert len(manager.leases.live(ready_id)) == 1
    del model
    gc.collect()
    assert manager.leases.live(ready_id) == []
    assert manager.delete(ready_id)["id"] == ready_id


def test_a_forked_child_leaves_its_parents_lease_alone(manager, ready_id):
    model, _ = manager.load(ready_id, device_map="cpu")
    child = multiprocessing.get_context("fork").Process(target=release, args=(model,))  # as a DataLoader worker
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert len(manager.leases.live(ready_id)) == 1
    assert release(model) and manager.leases.live(ready_id) == []


def test_prune_keeps_a_leased_revision(manager, ready_id):
    model, _ = manager.load(ready_id, device_map="cpu")
    snapshot = Path(manager.get(ready_id).file_path)
    files = sorted(path.name for path in snapshot.iterdir())
    manager.prune_cache()
    assert sorted(path.name for path in snapshot.iterdir()) == files
    assert all((snapshot / name).stat().st_size > 0 for name in files)
    with pytest.raises(Conflict):
        manager.delete(ready_id)
    release(model)


def test_a_failed_load_takes_no_lease(manager, ready_id):
    with pytest.raises(Exception, match="option"):
        manager.load(ready_id, option="bf16", quantization="bnb-8bit")
    Path(manager.get(ready_id).file_path, "config.json").unlink()
    with pytest.raises(NotFound, match="config.json"):
        manager.load(ready_id, device_map="cpu")
    with manager.catalog.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM leases").scalar() == 0


def test_cli_delete_is_refused_while_leased_and_forced_with_force(manager, ready_id, settings, monkeypatch):
    monkeypatch.setattr(cli, "_default_manager", lambda: ModelManager(settings))
    model, _ = manager.load(ready_id, device_map="cpu")
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["delete", ready_id, "--json"], stdout=out, stderr=err) == cli.EXIT_ERROR
    error = json.loads(err.getvalue())["error"]
    assert error["code"] == "conflict" and f"pid {os.getpid()}" in error["message"]
    out = io.StringIO()
    assert cli.main(["delete", ready_id, "--force", "--json"], stdout=out, stderr=err) == 0
    assert json.loads(out.getvalue())["id"] == ready_id
    del model
