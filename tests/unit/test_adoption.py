"""Models already in the Hugging Face cache show up in the catalog: filled by the official client,
listed by ModelManager and the CLI, never adopted half-downloaded or after being deleted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import snapshot_download

from mistudio_jupyter.core import adoption
from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from tests.polling import wait_for

LLAMA_PARAMS = 139_584


@pytest.fixture
def manager(settings: Settings) -> Iterator[ModelManager]:
    manager = ModelManager(settings)
    yield manager
    manager.close()


def cli_list(settings: Settings) -> list[dict[str, Any]]:
    """`mistudio list --json` in a child process over the same cache and catalog."""
    env = {**os.environ, "MISTUDIO_DB_URL": settings.db_url, "MISTUDIO_CACHE_DIR": str(settings.cache_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "mistudio_jupyter", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_cache_filled_by_huggingface_hub_is_listed_by_the_cli_and_the_manager(settings, hub, manager):
    snapshot = snapshot_download("tiny/llama", cache_dir=settings.cache_dir)
    snapshot_download("tiny/no-config", cache_dir=settings.cache_dir)  # not a loadable model

    (listed,) = cli_list(settings)

    assert (listed["repo_id"], listed["status"], listed["file_path"]) == ("tiny/llama", "ready", snapshot)
    assert (listed["family"], listed["params"], listed["revision"]) == ("llama", LLAMA_PARAMS, "main")
    assert listed["size_bytes"] > 0 and listed["progress"] == 1.0
    assert [record.id for record in manager.list()] == [listed["id"]]


def test_listing_an_unchanged_cache_does_not_scan_it_again(settings, hub, manager, monkeypatch):
    snapshot_download("tiny/llama", cache_dir=settings.cache_dir)
    scans = []
    scan = adoption.cached_model_revisions
    monkeypatch.setattr(
        adoption, "cached_model_revisions", lambda cache_dir: scans.append(cache_dir) or scan(cache_dir)
    )

    assert len(manager.list()) == 1 and len(manager.list()) == 1
    other = ModelManager(settings)  # another process: the fingerprint is in the catalog too
    assert len(other.list()) == 1
    other.close()
    assert len(scans) == 1

    snapshot_download("tiny/gpt2", cache_dir=settings.cache_dir)
    assert {record.repo_id for record in manager.list()} == {"tiny/llama", "tiny/gpt2"}
    assert len(scans) == 2


def test_a_model_deleted_through_us_is_not_adopted_again(settings, hub, manager):
    snapshot_download("tiny/llama", cache_dir=settings.cache_dir)
    (adopted,) = manager.list()

    manager.delete(adopted.id)

    assert not Path(adopted.file_path).exists(), "deleting removed the files"
    assert manager.list() == [] and cli_list(settings) == []


def test_an_interrupted_snapshot_download_is_not_adopted_until_it_completes(settings, hub, manager):
    hub.faults.set(path="/cdn/", throttle_bps=100_000)  # the weights (LFS) come from the CDN
    blobs = settings.cache_dir / "models--tiny--llama" / "blobs"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from huggingface_hub import snapshot_download; "
            "snapshot_download('tiny/llama', cache_dir=sys.argv[1])",
            str(settings.cache_dir),
        ]
    )
    wait_for(lambda: list(blobs.glob("*.incomplete")), what="a partial weights file")
    snapshot = next((settings.cache_dir / "models--tiny--llama" / "snapshots").iterdir())
    wait_for(lambda: (snapshot / "config.json").exists(), what="the config in the snapshot")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    assert manager.list() == []

    hub.faults.reset()
    snapshot_download("tiny/llama", cache_dir=settings.cache_dir)
    assert [(record.repo_id, record.status) for record in manager.list()] == [("tiny/llama", "ready")]


def test_a_sharded_snapshot_missing_shards_is_not_adopted(settings, hub, manager):
    snapshot_download(
        "tiny/llama-sharded",
        cache_dir=settings.cache_dir,
        allow_patterns=["config.json", "model-00001-of-00006.safetensors"],
    )  # no index either
    assert manager.list() == []
    snapshot_download("tiny/llama-sharded", cache_dir=settings.cache_dir)
    (record,) = manager.list()
    assert record.status == "ready" and record.params and record.family == "llama"
