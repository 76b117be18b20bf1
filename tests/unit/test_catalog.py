"""The catalog against real SQLite files and a real PostgreSQL server: CRUD, filters, migrations, claims
across processes, adoption."""

from __future__ import annotations

import datetime as dt
import multiprocessing

import pytest
from sqlalchemy import create_engine, inspect, text

from mistudio_jupyter.core.catalog import Catalog, utcnow
from mistudio_jupyter.core.errors import InvalidArgument, NotFound
from mistudio_jupyter.core.migrations import HEAD

pytestmark = pytest.mark.each_backend


@pytest.fixture
def fresh_db_url(catalog_backend, tmp_path, request):
    """A database with no schema yet."""
    if catalog_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        return
    with request.getfixturevalue("postgres_server").database(migrated=False) as url:
        yield url


@pytest.fixture
def catalog(db_url):
    catalog = Catalog(db_url)
    yield catalog
    catalog.close()


def _populate(catalog: Catalog) -> dict[str, str]:
    rows = [
        ("google/gemma-2-2b", "gemma", 2_614_341_888, "bnb-4bit", "ready"),
        ("meta-llama/Meta-Llama-3-8B", "llama", 8_030_261_248, "none", "downloading"),
        ("EleutherAI/pythia-70m", "pythia", 70_426_624, "none", "ready"),
        ("openai-community/gpt2", "gpt2", 124_439_808, "bnb-8bit", "failed"),
    ]
    ids = {}
    for repo_id, family, params, quantization, status in rows:
        record, created = catalog.add(repo_id, quantization=quantization, family=family, params=params, status=status)
        assert created
        ids[repo_id] = record.id
    return ids


def test_migrations_create_the_schema_from_empty(fresh_db_url, catalog_backend):
    Catalog(fresh_db_url).close()
    engine = create_engine(fresh_db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            version = connection.execute(text("select version_num from alembic_version")).scalar()
            if catalog_backend == "sqlite":
                assert connection.execute(text("pragma journal_mode")).scalar() == "wal"
            else:
                triggers = connection.execute(text("select tgname from pg_trigger where not tgisinternal")).scalars()
                assert list(triggers) == ["mistudio_models_changed"]
    finally:
        engine.dispose()
    assert {"models", "cache_scans", "audit", "leases", "alembic_version"} <= tables
    assert version == HEAD == "0007"
    Catalog(fresh_db_url).close()  # reopening an up-to-date catalog is a no-op


def test_a_catalog_url_whose_driver_is_missing_is_refused_saying_so():
    with pytest.raises(InvalidArgument, match="needs a database driver that is not installed"):
        Catalog("mysql+mysqldb://user@localhost/catalog")


def test_add_get_update_delete(catalog):
    record, created = catalog.add("tiny/gpt2", quantization="bnb-4bit", dtype="bfloat16", params=141056)
    assert created and record.status == "pending" and record.name == "tiny/gpt2"
    again, created_again = catalog.add("tiny/gpt2", quantization="bnb-4bit", dtype="bfloat16")
    assert not created_again and again.id == record.id
    other, created_other = catalog.add("tiny/gpt2", quantization="none")
    assert created_other and other.id != record.id

    updated = catalog.update(record.id, status="ready", size_bytes=1234, architecture={"summary": {"num_layers": 2}})
    assert updated.status == "ready" and updated.updated_at >= record.updated_at
    assert catalog.get(record.id).to_dict()["summary"] == {"num_layers": 2}
    catalog.delete(record.id)
    with pytest.raises(NotFound):
        catalog.get(record.id)
    with pytest.raises(NotFound):
        catalog.update(record.id, status="ready")


def test_record_json_has_every_documented_field(catalog):
    record, _ = catalog.add("tiny/llama", bytes_done=50, bytes_total=200, status="downloading")
    data = record.to_dict()
    for key in (
        "id",
        "name",
        "repo_id",
        "revision",
        "commit",
        "status",
        "quantization",
        "dtype",
        "family",
        "model_type",
        "params",
        "size_bytes",
        "file_path",
        "bytes_done",
        "bytes_total",
        "error",
        "created_at",
        "updated_at",
    ):
        assert key in data
    assert data["progress"] == 0.25
    assert data["created_at"].endswith("+00:00")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"family": "gemma"}, {"google/gemma-2-2b"}),
        ({"quantization": "none"}, {"meta-llama/Meta-Llama-3-8B", "EleutherAI/pythia-70m"}),
        ({"status": "ready"}, {"google/gemma-2-2b", "EleutherAI/pythia-70m"}),
        ({"min_params": 1_000_000_000}, {"google/gemma-2-2b", "meta-llama/Meta-Llama-3-8B"}),
        ({"max_params": 200_000_000}, {"EleutherAI/pythia-70m", "openai-community/gpt2"}),
        ({"min_params": 100_000_000, "max_params": 3_000_000_000}, {"google/gemma-2-2b", "openai-community/gpt2"}),
        ({"q": "LLAMA"}, {"meta-llama/Meta-Llama-3-8B"}),
        ({"q": "%"}, set()),
        ({"q": "gpt2", "status": "failed"}, {"openai-community/gpt2"}),
    ],
)
def test_every_filter(catalog, filters, expected):
    _populate(catalog)
    assert {record.repo_id for record in catalog.list(**filters)} == expected


def test_sort_limit_offset(catalog):
    _populate(catalog)
    by_params = [record.params for record in catalog.list(sort="params")]
    assert by_params == sorted(by_params)
    assert [r.params for r in catalog.list(sort="-params", limit=2)] == sorted(by_params, reverse=True)[:2]
    assert [r.params for r in catalog.list(sort="params", limit=2, offset=1)] == by_params[1:3]


@pytest.mark.parametrize("filters", [{}, {"sort": "params", "limit": 2, "offset": 1}, {"q": "gpt2"}])
def test_versions_list_the_same_entries_in_the_same_order(catalog, filters):
    _populate(catalog)
    listed = [record.id for record in catalog.list(**filters)]
    assert [model_id for model_id, _ in catalog.list_versions(**filters)] == listed and listed


def test_a_version_moves_with_every_write(catalog):
    record, _ = catalog.add("tiny/gpt2")
    ((model_id, before),) = catalog.list_versions()
    catalog.update(record.id, bytes_done=1)
    ((_, after),) = catalog.list_versions()
    assert model_id == record.id and after != before


@pytest.mark.parametrize(
    "bad",
    [{"sort": "secret"}, {"status": "bogus"}, {"quantization": "int3"}, {"limit": -1}, {"offset": -5}],
)
def test_bad_filters_are_refused(catalog, bad):
    with pytest.raises(InvalidArgument):
        catalog.list(**bad)


def test_bad_choices_on_add_and_update_change_nothing(catalog):
    with pytest.raises(InvalidArgument):
        catalog.add("tiny/gpt2", quantization="gptq")
    with pytest.raises(InvalidArgument):
        catalog.add("tiny/gpt2", dtype="float8")
    record, _ = catalog.add("tiny/gpt2")
    with pytest.raises(InvalidArgument):
        catalog.update(record.id, status="exploded")
    with pytest.raises(InvalidArgument):
        catalog.update(record.id, nonsense=1)
    assert catalog.get(record.id).status == "pending"
    assert len(catalog.list()) == 1


def test_claim_heartbeat_and_cancel(catalog):
    record, _ = catalog.add("tiny/gpt2")
    assert catalog.claim(record.id, "host:1")
    assert not catalog.claim(record.id, "host:2")
    assert catalog.heartbeat(record.id, "host:1", bytes_done=10) is False
    catalog.request_cancel(record.id)
    assert catalog.heartbeat(record.id, "host:1", bytes_done=20) is True
    with pytest.raises(NotFound):
        catalog.heartbeat(record.id, "host:2", bytes_done=30)
    assert catalog.get(record.id).bytes_done == 20


def test_a_stale_claim_can_be_taken_over(catalog):
    record, _ = catalog.add("tiny/gpt2")
    assert catalog.claim(record.id, "host:1")
    catalog.update(record.id, heartbeat_at=utcnow() - dt.timedelta(minutes=5))
    assert catalog.claim(record.id, "host:2", stale_after_s=30)
    assert catalog.get(record.id).worker == "host:2"


@pytest.mark.each_backend("postgres")  # SQLite has no row locks: it serialises every writer
def test_a_claim_does_not_wait_for_a_row_another_claimant_holds(catalog):
    """On PostgreSQL a claim locks the row (`FOR UPDATE SKIP LOCKED`): while another transaction holds
    it, a claim loses at once instead of waiting (a wait would end in this claimant's lock timeout);
    once released, the row can be claimed."""
    record, _ = catalog.add("tiny/gpt2")
    impatient = Catalog(catalog.db_url + "&options=-c%20lock_timeout%3D3000")
    try:
        with catalog.engine.connect() as holder, holder.begin():
            holder.execute(text("select id from models where id = :id for update"), {"id": record.id})
            assert impatient.claim(record.id, "host:1") is False
        assert impatient.claim(record.id, "host:2")
    finally:
        impatient.close()
    assert catalog.get(record.id).worker == "host:2"


def test_entries_without_a_value_sort_first_ascending_and_last_descending(catalog):
    catalog.add("tiny/none")
    catalog.add("tiny/small", params=10)
    catalog.add("tiny/large", params=1000)
    assert [r.repo_id for r in catalog.list(sort="params")] == ["tiny/none", "tiny/small", "tiny/large"]
    assert [r.repo_id for r in catalog.list(sort="-params")] == ["tiny/large", "tiny/small", "tiny/none"]


def _claim_in_process(db_url: str, model_id: str, worker: str, start, results) -> None:
    catalog = Catalog(db_url)
    start.wait()
    results.put((worker, catalog.claim(model_id, worker)))
    catalog.close()


def test_two_processes_claiming_the_same_job_one_wins(db_url, catalog):
    record, _ = catalog.add("tiny/gpt2")
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [
        context.Process(target=_claim_in_process, args=(db_url, record.id, f"host:{n}", start, results))
        for n in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = dict(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert sum(outcomes.values()) == 1
    winner = next(name for name, won in outcomes.items() if won)
    assert catalog.get(record.id).worker == winner


def _open_catalog(db_url: str) -> None:
    Catalog(db_url).close()


def test_concurrent_first_opens_migrate_once(fresh_db_url):
    db_url = fresh_db_url
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_open_catalog, args=(db_url,)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    catalog = Catalog(db_url)
    catalog.add("tiny/gpt2")
    assert len(catalog.list()) == 1
    catalog.close()


def test_adoption_of_a_cache_filled_by_huggingface_hub(hub, settings):
    from huggingface_hub import snapshot_download

    snapshot = snapshot_download("tiny/llama", cache_dir=settings.cache_dir)
    snapshot_download("tiny/no-config", cache_dir=settings.cache_dir)  # no config: not a loadable model
    catalog = Catalog(settings.db_url)
    adopted = catalog.adopt(settings.cache_dir)
    assert [record.repo_id for record in adopted] == ["tiny/llama"]
    record = adopted[0]
    assert record.status == "ready" and record.file_path == snapshot
    assert record.family == "llama" and record.model_type == "llama" and record.revision == "main"
    assert record.params == 139_584 and record.size_bytes > 0 and len(record.commit) == 40
    assert catalog.adopt(settings.cache_dir) == []  # adopting again adds nothing
    assert len(catalog.list()) == 1


def _add_in_process(db_url: str, start, results) -> None:
    catalog = Catalog(db_url)
    start.wait()
    record, created = catalog.add("tiny/gpt2", quantization="bnb-4bit")
    results.put((record.id, created))
    catalog.close()


def test_racing_adds_from_processes_make_one_entry(db_url, catalog):
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_add_in_process, args=(db_url, start, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert len({model_id for model_id, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1
    assert len(catalog.list()) == 1


def test_audit_entries_newest_first_and_requested_by(catalog):
    record, _ = catalog.add("tiny/gpt2", requested_by="alice")
    assert record.to_dict()["requested_by"] == "alice"
    catalog.record_action("alice", "download", record)
    catalog.record_action("bob", "cancel", record)
    catalog.record_action("carol", "prune")
    entries = [entry.to_dict() for entry in catalog.audit()]
    assert [(e["user"], e["action"], e["repo_id"]) for e in entries] == [
        ("carol", "prune", None),
        ("bob", "cancel", "tiny/gpt2"),
        ("alice", "download", "tiny/gpt2"),
    ]
    assert entries[1]["model_id"] == record.id and entries[1]["revision"] == "main"
    assert [e.user for e in catalog.audit(limit=1, offset=1)] == ["bob"]
    with pytest.raises(InvalidArgument):
        catalog.record_action("alice", "format-disk", record)
    with pytest.raises(InvalidArgument):
        catalog.audit(limit=-1)
    assert len(catalog.audit()) == 3
