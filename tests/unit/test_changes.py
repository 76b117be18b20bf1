"""The change tracker over a real SQLite and a real PostgreSQL catalog, with another process writing to it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mistudio_jupyter.core.changes import CatalogChanges, NotifiedChangeTracker, change_tracker
from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.each_backend


@pytest.fixture
def manager(settings: Settings) -> Iterator[ModelManager]:
    manager = ModelManager(settings)
    yield manager
    manager.close()


def in_another_process(settings: Settings, code: str) -> None:
    """Run `code` with `manager` bound to a ModelManager over the same catalog, in a child process."""
    script = (
        "import sys; from mistudio_jupyter.core.service import ModelManager; "
        f"manager = ModelManager(cache_dir=sys.argv[1], db_url=sys.argv[2]); {code}; manager.close()"
    )
    subprocess.run([sys.executable, "-c", script, str(settings.cache_dir), settings.db_url], check=True, cwd=REPO)


def test_a_tracker_sees_what_other_processes_add_update_and_delete(manager: ModelManager, settings: Settings) -> None:
    first, second = manager.add("tiny/gpt2"), manager.add("tiny/llama")
    tracker = change_tracker(manager)

    changes = tracker.look()
    assert [r.id for r in changes.changed] == [first.id, second.id] and changes.deleted == []
    assert not tracker.look(), "nothing moved: nothing to report"

    in_another_process(
        settings,
        f"manager.catalog.update({first.id!r}, bytes_done=7); manager.delete({second.id!r}); manager.add('tiny/qwen2')",
    )
    changes = tracker.look()

    assert [(r.id, r.bytes_done) for r in changes.changed[:1]] == [(first.id, 7)]
    assert [r.repo_id for r in changes.changed[1:]] == ["tiny/qwen2"]
    assert changes.deleted == [second.id]
    assert not tracker.look()


def test_a_first_look_reads_a_large_catalog_whole(manager: ModelManager) -> None:
    ids = {manager.catalog.add(f"org/model-{n}")[0].id for n in range(1_234)}

    changes = change_tracker(manager).look()

    assert {record.id for record in changes.changed} == ids
    updated = [record.updated_at for record in changes.changed]
    assert updated == sorted(updated)


def test_one_poller_serves_each_subscriber_at_its_own_pace(manager: ModelManager) -> None:
    kept, dropped = manager.add("tiny/gpt2"), manager.add("tiny/llama")
    eager: list[CatalogChanges] = []
    patient: list[CatalogChanges] = []
    manager.changes.subscribe(eager.append, 0.05)
    manager.changes.subscribe(patient.append, 1.5, everything_first=True)
    first = wait_for(lambda: patient, what="the first delivery")[0]
    assert first.complete and {record.id for record in first.changed} == {kept.id, dropped.id}

    for done in (1, 2, 3):
        manager.catalog.update(kept.id, bytes_done=done)
        time.sleep(0.1)
    manager.delete(dropped.id)
    merged = wait_for(lambda: patient[1:], timeout=5, what="the patient subscriber's next delivery")[0]

    assert [(record.id, record.bytes_done) for record in merged.changed] == [(kept.id, 3)]
    assert merged.deleted == [dropped.id] and not merged.complete
    assert sum(1 for changes in eager if changes) >= 3, "the eager one heard of each change on its own"
    manager.changes.unsubscribe(eager.append)
    manager.changes.unsubscribe(patient.append)
    wait_for(lambda: not manager.changes.running, timeout=2, what="the poller to stop")


def test_a_failed_first_read_is_retried_and_the_poller_goes_on(manager: ModelManager, monkeypatch) -> None:
    entry = manager.add("tiny/gpt2")
    list_entries, failures = manager.catalog.list, [RuntimeError("the database went away")]

    def flaky_list(**filters):
        if failures and filters.get("sort") == "updated_at":  # the whole catalog, read for a first delivery
            raise failures.pop()
        return list_entries(**filters)

    monkeypatch.setattr(manager.catalog, "list", flaky_list)
    delivered: list[CatalogChanges] = []
    manager.changes.subscribe(delivered.append, 0.05, everything_first=True)
    first = wait_for(lambda: delivered, timeout=10, what="the first delivery after a failed read")[0]
    manager.changes.unsubscribe(delivered.append)
    assert first.complete and [record.id for record in first.changed] == [entry.id] and not failures


@pytest.mark.each_backend("postgres")
def test_on_postgresql_a_tracker_reads_only_the_notified_rows(manager: ModelManager, monkeypatch) -> None:
    """After its first look, a PostgreSQL tracker learns what changed from the catalog's notifications:
    it never lists every entry's version again, and a look when nothing was written reads no row."""
    quiet, busy = manager.add("tiny/gpt2"), manager.add("tiny/llama")
    tracker = change_tracker(manager)
    assert isinstance(tracker, NotifiedChangeTracker)
    assert {record.id for record in tracker.look().changed} == {quiet.id, busy.id}

    def no_scan() -> None:
        raise AssertionError("the tracker listed every entry's version")

    read: list[set[str]] = []
    get_many = manager.catalog.get_many
    monkeypatch.setattr(manager.catalog, "versions", no_scan)
    monkeypatch.setattr(manager.catalog, "get_many", lambda ids: read.append(set(ids)) or get_many(ids))
    assert not tracker.look() and read == []

    in_another_process(manager.settings, f"manager.catalog.update({busy.id!r}, bytes_done=5)")
    manager.delete(quiet.id)
    changes = tracker.look()

    assert [(record.id, record.bytes_done) for record in changes.changed] == [(busy.id, 5)]
    assert changes.deleted == [quiet.id] and read == [{busy.id, quiet.id}]
    tracker.close()
    monkeypatch.undo()
    assert not tracker.look(), "a tracker that listens again compares versions and finds nothing new"


@pytest.mark.each_backend("postgres")
def test_on_postgresql_a_lost_listening_connection_loses_no_change(manager: ModelManager) -> None:
    """The tracker's listening session is killed by the server: that look fails, and the next one
    listens again and still reports what was written while nobody listened."""
    from psycopg import OperationalError

    entry = manager.add("tiny/gpt2")
    tracker = change_tracker(manager)
    tracker.look()
    listener_pid = tracker._listener.info.backend_pid
    with manager.catalog.engine.begin() as connection:
        connection.execute(text("select pg_terminate_backend(:pid)"), {"pid": listener_pid})
    manager.catalog.update(entry.id, bytes_done=3)

    with pytest.raises(OperationalError):
        tracker.look()
    changes = tracker.look()

    assert [(record.id, record.bytes_done) for record in changes.changed] == [(entry.id, 3)]
    tracker.close()
