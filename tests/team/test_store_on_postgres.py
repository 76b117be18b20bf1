"""The team store as `make team-demo` runs it (a real JupyterHub, the store on a PostgreSQL catalog): users
asking for one repo at once cause one transfer, a store killed mid-download picks it up again when the
Hub restarts it, and no token leaks anywhere."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from mistudio_jupyter.core.downloads.cache import RepoCache
from scripts.team_demo import DELETE, DOWNLOAD, READ, TeamDemo
from tests import postgres
from tests.hubserver import HubServer, default_root
from tests.hubserver.wan import WanProfile
from tests.polling import wait_for
from tests.ports import free_port
from tests.prerequisites import missing

from .conftest import HF_TOKEN, TeamHub, _check_prerequisites, catalog_rows, store_process

BIG, BIG_FILE, ONE_REPO = "tiny/big", "model.safetensors", "tiny/llama"
USERS = {"alice": [DOWNLOAD, DELETE], "bob": [READ], **{f"user{i:02d}": [DOWNLOAD] for i in range(8)}}


@dataclass
class Team:
    """The demo and the store's REST API as its users call it."""

    demo: TeamDemo
    hub: HubServer
    api: TeamHub

    def record(self, model_id: str) -> dict[str, Any] | None:
        """The entry as the store shows it, or None while the store does not answer."""
        try:
            status, record = self.api.call("alice", "GET", f"/models/{model_id}")
        except (OSError, ValueError):  # the proxy's error page while the store is down
            return None
        return record if status == 200 else None

    def ready(self, model_id: str) -> bool:
        record = self.record(model_id)
        assert record is None or record["status"] not in ("failed", "cancelled"), record
        return record is not None and record["status"] == "ready"

    def store_process(self) -> psutil.Process:
        return store_process(self.api.hub_pid)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    _check_prerequisites()
    if postgres.missing_reason():
        missing(postgres.missing_reason() or "")
    environment = {"HF_TOKEN": HF_TOKEN, "MISTUDIO_DOWNLOAD_SUMMARY": "0"}
    demo = TeamDemo(tmp_path_factory.mktemp("team"), default_root(), free_port(), USERS, environment).start()
    try:
        assert demo.hub is not None and demo.jupyterhub is not None
        tokens = {user: demo.token(user) for user in USERS}
        api = TeamHub(demo.url, tokens, demo.cache_dir, demo.db_url, demo.log_path, demo.jupyterhub.pid)
        yield Team(demo, demo.hub, api)
    finally:
        demo.stop()


def test_users_asking_for_one_repo_at_once_cause_one_transfer(team: Team) -> None:
    hub = team.hub
    hub.faults.reset()
    hub.clear_log()
    askers = [user for user, scopes in USERS.items() if DOWNLOAD in scopes]
    barrier = threading.Barrier(len(askers))

    def ask(user: str) -> str:
        barrier.wait()
        status, record = team.api.call(user, "POST", "/models", {"repo_id": ONE_REPO})
        assert status == 200, record
        status, started = team.api.call(user, "POST", f"/models/{record['id']}/download", {})
        assert status == 202, started
        return str(record["id"])

    with ThreadPoolExecutor(len(askers)) as pool:
        ids = set(pool.map(ask, askers))
    (model_id,) = ids
    wait_for(lambda: team.ready(model_id), 120, 0.2, "the download")
    weights = hub.cdn_gets(BIG_FILE)
    assert len(weights) == 1 and weights[0].bytes_sent == hub.repos[ONE_REPO].files[BIG_FILE].size


def test_a_store_killed_mid_download_resumes_when_the_hub_restarts_it(team: Team) -> None:
    """The store and its download worker are killed, as a crash or a stopped container kills them; the
    Hub starts the store again, which resumes the download from the bytes on disk."""
    hub = team.hub
    big = hub.repos[BIG].files[BIG_FILE]
    hub.faults.reset()
    hub.clear_log()
    hub.faults.wan = WanProfile(per_conn_bps=1e6, rtt_ms=20)  # a CDN's path: many streams
    status, record = team.api.call("alice", "POST", "/models", {"repo_id": BIG})
    assert status == 200 and team.api.call("alice", "POST", f"/models/{record['id']}/download", {})[0] == 202
    on_disk = RepoCache(team.demo.cache_dir, BIG)
    wait_for(lambda: on_disk.bytes_on_disk(big) >= big.size // 2, 120, 0.02, "half of the file")
    store = team.store_process()
    (worker,) = (p for p in store.children() if "downloads.worker" in " ".join(p.cmdline()))
    worker.kill()
    store.kill()
    hub.faults.wan = WanProfile(per_conn_bps=4e6, rtt_ms=20)

    wait_for(lambda: team.ready(record["id"]), 180, 0.5, "the store's restart and the resumed download")

    assert team.store_process().pid != store.pid
    wait_for(lambda: all(r.finished for r in hub.cdn_gets(BIG_FILE)), 10, 0.05, "the Hub's answers")
    fetched = sum(r.bytes_delivered for r in hub.cdn_gets(BIG_FILE))
    print(f"\nre-fetched {fetched - big.size} bytes ({(fetched - big.size) / big.size:.3%})")
    assert big.size <= fetched <= big.size * 1.01
    snapshot = Path(team.record(record["id"])["file_path"])  # type: ignore[index]
    assert (snapshot / BIG_FILE).read_bytes() == big.read_bytes()


def test_a_kernels_lease_blocks_a_delete_on_postgresql(team: Team) -> None:
    status, record = team.api.call("alice", "POST", "/models", {"repo_id": "tiny/gpt2"})
    path = f"/models/{record['id']}"
    status, lease = team.api.call("bob", "POST", f"{path}/leases", {"holder": "gpu1 pid 4242 kernel"})
    assert status == 201, lease
    status, refused = team.api.call("alice", "DELETE", path)
    assert status == 409 and "in use by bob@gpu1 pid 4242 kernel since" in refused["error"]["message"]
    assert team.api.call("alice", "DELETE", f"{path}?force=true")[0] == 403  # alice may delete, not force
    assert team.api.call("bob", "DELETE", f"/leases/{lease['id']}")[0] == 200
    assert team.api.call("alice", "DELETE", path)[0] == 200


def test_no_token_in_the_catalog_the_audit_log_the_store_log_or_a_response(team: Team) -> None:
    status, gated = team.api.call("alice", "POST", "/models", {"repo_id": "tiny/gated"})
    assert status == 200 and team.api.call("alice", "POST", f"/models/{gated['id']}/download", {})[0] == 202
    wait_for(lambda: team.ready(gated["id"]), 120, 0.2, "the gated download, with the store's HF_TOKEN")
    assert team.api.call("bob", "DELETE", f"/models/{gated['id']}")[0] == 403
    assert team.api.call("alice", "DELETE", f"/models/{gated['id']}")[0] == 200
    assert team.api.call("alice", "GET", "/audit")[0] == 200
    store_token = team.store_process().environ()["JUPYTERHUB_API_TOKEN"]
    secrets = [*team.api.tokens.values(), store_token, HF_TOKEN]

    rows = catalog_rows(team.demo.db_url)
    logs = team.demo.log_path.read_text() + "".join(
        path.read_text() for path in team.demo.store_runtime_dir.rglob("*.log")
    )
    assert "tiny/gated" in rows and "alice" in rows and "mistudio store on" in logs
    for secret in secrets:
        assert secret not in rows and secret not in logs
        assert not any(secret.encode() in answer for answer in team.api.answers)
