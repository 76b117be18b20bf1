"""`mistudio list` and `mistudio cancel` read a current SQLite catalog with sqlite3 (no SQLAlchemy):
what they answer must be what the manager answers, on one catalog file."""

from __future__ import annotations

import datetime as dt
import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import snapshot_download

from mistudio_jupyter import cli
from mistudio_jupyter.core.adoption import cache_fingerprint
from mistudio_jupyter.core.catalog import Catalog, ModelRecord
from mistudio_jupyter.core.errors import Conflict, InvalidArgument, NotFound
from mistudio_jupyter.core.jobs import WORKER_MODULE
from mistudio_jupyter.core.options import SORTABLE, STATUSES
from mistudio_jupyter.core.records import utcnow
from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from mistudio_jupyter.core.sqlite_catalog import COLUMNS, CatalogRow, SQLiteCatalog

ROOT = Path(__file__).parents[2]


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`settings` as the environment of an in-process `mistudio` command."""
    monkeypatch.setenv("MISTUDIO_DB_URL", settings.db_url)
    monkeypatch.setenv("MISTUDIO_CACHE_DIR", str(settings.cache_dir))
    return settings


@pytest.fixture
def catalog(env: Settings) -> Iterator[Catalog]:
    catalog = Catalog(env.db_url)
    yield catalog
    catalog.close()


def _cache_seen(catalog: Catalog, settings: Settings) -> None:
    """Record the cache as an adoption does, so that a `list` has nothing to adopt."""
    catalog.record_cache_fingerprint(settings.cache_dir, cache_fingerprint(settings.cache_dir))


def _fill(catalog: Catalog) -> None:
    """One entry in every status, with every kind of column filled somewhere."""
    for number, status in enumerate(STATUSES):
        catalog.add(
            f"org{number % 3}/Model_{number}%",
            name=f"Model {number}" if number % 2 else None,
            status=status,
            family=("llama", "gpt2", None)[number % 3],
            params=None if number == 4 else 10 ** (number + 5),
            size_bytes=None if number % 2 else 3 * 10 ** (number + 6),
            bytes_done=number * 1000,
            bytes_total=None if number == 3 else 6000,
            quantization=("none", "bnb-8bit", "bnb-4bit")[number % 3],
            architecture={"summary": {"num_layers": number}} if number % 2 else None,
            gated=bool(number % 2),
            speed_bps=1.5e6 if status == "downloading" else None,
            error_code="download_failed" if status == "failed" else None,
            error_message="it broke" if status == "failed" else None,
            heartbeat_at=utcnow() if status == "downloading" else None,
        )


def _no_manager() -> None:
    raise AssertionError("the quick path was expected to answer")


def _command(words: list[str], manager_factory: Any, *, quick: bool) -> tuple[str, str, type]:
    """The JSON and the text that `main` prints for `words`, and the type of record it answered with."""
    args, result = cli.execute(words, manager_factory, quick=quick)
    records = result if isinstance(result, list) else [result]
    kind = type(records[0]) if records else type(None)
    return json.dumps(cli.to_jsonable(result), indent=2, default=str), cli.format_text(result, args.command), kind


def test_the_quick_row_has_every_column_of_the_models_table():
    assert set(COLUMNS) == set(ModelRecord.__table__.columns.keys())


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["--status", "failed"],
        ["--family", "llama"],
        ["--quantization", "bnb-8bit"],
        ["--min-params", "1M", "--max-params", "1B"],
        ["-q", "MODEL_1%"],
        ["-q", "org2"],
        ["-q", "_"],
        ["--limit", "2", "--offset", "1"],
        ["--offset", "4"],
        *[[f"--sort={sort}"] for field in SORTABLE for sort in (field, f"-{field}")],
    ],
)
def test_list_prints_what_the_manager_prints(manager, catalog, env, words):
    _fill(catalog)
    full = _command(["list", *words], lambda: manager, quick=False)
    fast = _command(["list", *words], _no_manager, quick=True)
    assert fast[:2] == full[:2]
    assert full[2] in (ModelRecord, type(None)) and fast[2] in (CatalogRow, type(None))


@pytest.mark.parametrize(
    ("words", "error"),
    [
        (["--sort", "secret"], "cannot sort by 'secret'"),
        (["--limit", "-1"], "limit must be between"),
        (["--min-params", "99999999999999999999"], "min_params must be between"),
    ],
)
def test_bad_list_filters_get_the_managers_error(manager, catalog, env, words, error):
    with pytest.raises(InvalidArgument) as full:
        cli.execute(["list", *words], lambda: manager, quick=False)
    with pytest.raises(InvalidArgument) as fast:
        cli.execute(["list", *words], _no_manager, quick=True)
    assert str(fast.value) == str(full.value) and error in str(fast.value)


def test_models_that_appear_in_the_cache_are_adopted_then_listed_quickly(manager, catalog, env, hub):
    catalog.add("org/pending")
    snapshot_download("tiny/llama", cache_dir=env.cache_dir)

    first = _command(["list", "--json"], lambda: manager, quick=True)  # the cache changed
    again = _command(["list", "--json"], _no_manager, quick=True)

    assert first[2] is ModelRecord and again[2] is CatalogRow
    assert first[:2] == again[:2]
    assert {(row["repo_id"], row["status"]) for row in json.loads(again[0])} == {
        ("org/pending", "pending"),
        ("tiny/llama", "ready"),
    }


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_list_marks_entries_whose_worker_is_gone_as_the_manager_does(catalog, env):
    long_ago = utcnow() - dt.timedelta(minutes=5)
    here = socket.gethostname()
    dead = catalog.add("org/dead", status="downloading", worker=f"{here}:{_gone_pid()}", speed_bps=9.0)[0]
    asked = catalog.add("org/asked", status="downloading", worker=f"{here}:{_gone_pid()}", cancel_requested=True)[0]
    remote = catalog.add("org/remote", status="pending", worker="elsewhere:12", heartbeat_at=long_ago)[0]
    fresh = catalog.add("org/fresh", status="downloading", worker="elsewhere:13", heartbeat_at=utcnow())[0]
    _cache_seen(catalog, env)

    args, listed = cli.execute(["list"], _no_manager, quick=True)

    status = {record.id: record.status for record in listed}
    assert status == {dead.id: "interrupted", asked.id: "cancelled", remote.id: "interrupted", fresh.id: "downloading"}
    stored = catalog.get(dead.id)
    assert stored.status == "interrupted" and stored.speed_bps is None and stored.updated_at > dead.updated_at


@pytest.fixture
def fake_worker() -> Iterator[subprocess.Popen[bytes]]:
    """A process that passes for a download worker (its command line names the worker module)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", WORKER_MODULE])
    yield child
    child.kill()
    child.wait()


def test_cancel_stops_a_running_worker_and_records_it(catalog, env, fake_worker):
    record = catalog.add("org/model", status="downloading", worker=f"{socket.gethostname()}:{fake_worker.pid}")[0]

    args, cancelled = cli.execute(["cancel", record.id], _no_manager, quick=True)

    assert isinstance(cancelled, CatalogRow) and cancelled.status == "cancelled"
    assert fake_worker.wait(timeout=10) != 0  # stopped by SIGTERM
    stored = catalog.get(record.id)
    assert stored.to_dict() == cancelled.to_dict() and stored.cancel_requested


@pytest.mark.parametrize("status", ["pending", "failed", "interrupted", "cancelled"])
def test_cancel_without_a_running_job_prints_what_the_manager_prints(manager, catalog, env, status):
    record = catalog.add("org/model", status=status, speed_bps=5.0, eta_s=2.0)[0]

    fast = _command(["cancel", "org/model"], _no_manager, quick=True)
    stored = catalog.get(record.id)
    full = _command(["cancel", record.id], lambda: manager, quick=False)

    assert (fast[2], full[2]) == (CatalogRow, ModelRecord)
    assert fast[:2] == full[:2]
    assert stored.status == "cancelled"
    assert (stored.speed_bps, stored.eta_s) == ((5.0, 2.0) if status == "cancelled" else (None, None))


@pytest.mark.parametrize(
    ("words", "error"),
    [(["cancel", "{ready}"], Conflict), (["cancel", "org/none"], NotFound), (["cancel", "no..id"], NotFound)],
)
def test_cancel_errors_are_the_managers(manager, catalog, env, words, error):
    ready = catalog.add("org/ready", status="ready")[0]
    words = [word.format(ready=ready.id) for word in words]
    with pytest.raises(error) as full:
        cli.execute(words, lambda: manager, quick=False)
    with pytest.raises(error) as fast:
        cli.execute(words, _no_manager, quick=True)
    assert str(fast.value) == str(full.value)


def test_cancel_with_discard_is_left_to_the_manager(manager, catalog, env):
    record = catalog.add("org/model")[0]
    args, cancelled = cli.execute(["cancel", record.id, "--discard"], lambda: manager, quick=True)
    assert isinstance(cancelled, ModelRecord) and cancelled.status == "cancelled"


def test_the_quick_path_opens_only_a_current_sqlite_file(tmp_path, catalog, env):
    missing = tmp_path / "missing.sqlite"
    assert SQLiteCatalog.open(f"sqlite:///{missing}") is None and not missing.exists()
    for url in ("sqlite://", "sqlite:///:memory:", "postgresql://user@host/db", f"sqlite:///{env.cache_dir}?mode=ro"):
        assert SQLiteCatalog.open(url) is None, url
    with sqlite3.connect(env.db_url.split(":///", 1)[1]) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    assert SQLiteCatalog.open(env.db_url) is None


def test_a_missing_catalog_is_created_by_list_as_before(tmp_path, monkeypatch):
    db = tmp_path / "new" / "catalog.sqlite"
    monkeypatch.setenv("MISTUDIO_DB_URL", f"sqlite:///{db}")
    monkeypatch.setenv("MISTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    args, listed = cli.execute(["list"], ModelManager, quick=True)
    assert listed == [] and db.is_file()
    assert SQLiteCatalog.open(f"sqlite:///{db}") is not None


def test_list_and_cancel_run_in_a_process_that_never_imports_sqlalchemy(tmp_path, catalog, env):
    """A real `mistudio` process: its modules at exit, and what it printed."""
    record = catalog.add("org/model", status="cancelled")[0]
    _cache_seen(catalog, env)
    code = (
        "import atexit, json, sys; from mistudio_jupyter.cli import main; "
        "atexit.register(lambda: print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)); "
        "sys.exit(main())"
    )
    for words in (["list"], ["cancel", record.id], ["list", "--json"]):
        done = subprocess.run(
            [sys.executable, "-c", code, *words], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert done.returncode == 0, done.stderr
        modules = set(json.loads(done.stderr.strip().splitlines()[-1]))
        assert "mistudio_jupyter" in modules
        assert not modules & {"sqlalchemy", "alembic", "huggingface_hub", "torch"}, words
        assert "org/model" in done.stdout


def test_a_worker_heartbeat_through_sqlite3_is_what_sqlalchemy_reads(catalog: Catalog, env: Settings) -> None:
    """Download workers write progress through the stdlib catalog: the same row, read by SQLAlchemy."""
    record, _ = catalog.add("org/model")
    assert catalog.claim(record.id, "host:1", stale_after_s=30)
    quick = SQLiteCatalog.open(env.db_url)
    assert quick is not None
    try:
        cancel = quick.heartbeat(record.id, "host:1", status="downloading", bytes_done=5, bytes_total=10, note="n")
        quick.update(record.id, architecture={"summary": {"num_layers": 2}})
        with pytest.raises(NotFound):
            quick.heartbeat(record.id, "host:2", bytes_done=6)
        catalog.request_cancel(record.id)
        cancel_later = quick.heartbeat(record.id, "host:1", bytes_done=7)
    finally:
        quick.close()

    seen = catalog.get(record.id)
    assert (cancel, cancel_later) == (False, True)
    assert (seen.bytes_done, seen.bytes_total, seen.note, seen.status) == (7, 10, "n", "downloading")
    assert seen.architecture == {"summary": {"num_layers": 2}} and seen.heartbeat_at is not None
