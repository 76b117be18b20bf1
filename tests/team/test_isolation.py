"""The shared cache belongs to the store: other Unix users read every file of it and change none."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.polling import wait_for
from tests.prerequisites import missing

from .conftest import TeamHub

REPO_ID = "tiny/qwen2"
USER = "nobody"  # a user of the machine who is not the store's account


def _as_user(script: str) -> subprocess.CompletedProcess[str]:
    """`script` run by /bin/sh as USER, as a user's kernel or terminal would run it."""
    return subprocess.run(
        ["/bin/sh", "-c", script],
        user=USER,
        group="nogroup",
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def snapshot(team_hub: TeamHub) -> Path:
    if os.geteuid() != 0:
        missing("root, to run a check as another Unix user")
    status, record = team_hub.call("bob", "POST", "/models", {"repo_id": REPO_ID})
    assert status == 200, record
    assert team_hub.call("bob", "POST", f"/models/{record['id']}/download", {})[0] == 202

    def ready() -> dict | None:
        found = team_hub.call("carol", "GET", f"/models/{record['id']}")[1]
        assert found["status"] not in ("failed", "cancelled", "interrupted"), found
        return found if found["status"] == "ready" else None

    return Path(wait_for(ready, 120, 0.2, "the download")["file_path"])


def test_everything_in_the_shared_cache_is_the_stores_and_read_only_to_others(
    team_hub: TeamHub, snapshot: Path
) -> None:
    entries = [team_hub.cache_dir, *team_hub.cache_dir.rglob("*")]
    assert snapshot.is_relative_to(team_hub.cache_dir) and len(entries) > 10
    for path in entries:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        assert info.st_uid == os.geteuid(), f"{path} is not owned by the store's account"
        assert not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH), f"{path} is writable by others: {oct(info.st_mode)}"
        readable = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(info.st_mode) else 0)
        assert info.st_mode & readable == readable, f"{path} is not readable by others: {oct(info.st_mode)}"


def test_another_user_reads_the_model_but_cannot_change_it(team_hub: TeamHub, snapshot: Path) -> None:
    config, weights = snapshot / "config.json", snapshot / "model.safetensors"
    read = _as_user(f"cat '{config}' > /dev/null && cat '{weights}' > /dev/null")
    assert read.returncode == 0, read.stderr

    blob = weights.resolve()
    for attempt in (
        f"echo x >> '{blob}'",  # change the weights
        f"rm -f '{blob}'",  # remove them
        f"touch '{snapshot / 'planted.py'}'",  # add a file to the snapshot
        f"mkdir '{team_hub.cache_dir / 'models--someone--else'}'",  # start a repo of one's own
    ):
        refused = _as_user(attempt)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr, (attempt, refused)
    assert blob.is_file() and not (snapshot / "planted.py").exists()
