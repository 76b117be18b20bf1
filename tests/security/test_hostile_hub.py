"""A Hub or mirror that lies (a mirror set through HF_ENDPOINT can be anyone's): blob ids, sha256
values, file names and commits that are paths, ranges that are not the ones asked for. Whatever it
answers, nothing is written outside the cache and the download ends with a clear failure or a
verified blob."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mistudio_jupyter.core.downloads.cache import RepoCache
from mistudio_jupyter.core.downloads.engine import Engine
from mistudio_jupyter.core.errors import DownloadFailed
from mistudio_jupyter.core.hub import PlannedFile
from tests.reliability.live import tree

REPO = "tiny/gpt2"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"


pytestmark = pytest.mark.usefixtures("no_download_summary")


def rewrite_sibling(path: str, **fields: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A model-info rewrite that changes the sibling `path` (`lfs_sha256` sets its LFS sha256)."""

    def rewrite(info: dict[str, Any]) -> dict[str, Any]:
        for sibling in info["siblings"]:
            if sibling["rfilename"] == path:
                if "lfs_sha256" in fields:
                    sibling["lfs"]["sha256"] = fields["lfs_sha256"]
                sibling.update({key: value for key, value in fields.items() if key != "lfs_sha256"})
        return info

    return rewrite


def escape_to(cache: Path, target: Path) -> str:
    """A relative path that, joined to the repo's blobs folder, lands on `target`."""
    return os.path.relpath(target, cache / "models--tiny--gpt2" / "blobs")


def hostile_answers(cache: Path, outside: Path) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    escape = escape_to(cache, outside / "pwn")
    return {
        "blob id that is a path": rewrite_sibling(CONFIG, blobId=escape),
        "blob id pointing at an existing file": rewrite_sibling(CONFIG, blobId=escape_to(cache, outside / "victim")),
        "sha256 that is a path": rewrite_sibling(WEIGHTS, lfs_sha256=escape),
        "blob id of 39 hex digits": rewrite_sibling(CONFIG, blobId="a" * 39),
        "blob id in upper case": rewrite_sibling(CONFIG, blobId="A" * 40),
        "file name with a backslash": rewrite_sibling(WEIGHTS, rfilename="..\\..\\outside.safetensors"),
        "file name with a NUL": rewrite_sibling(WEIGHTS, rfilename="model\x00.safetensors"),
        "commit that is a path": lambda info: {**info, "sha": escape},
    }


CASES = [
    "blob id that is a path",
    "blob id pointing at an existing file",
    "sha256 that is a path",
    "blob id of 39 hex digits",
    "blob id in upper case",
    "file name with a backslash",
    "file name with a NUL",
    "commit that is a path",
]


@pytest.mark.parametrize("case", CASES)
def test_ids_and_names_that_are_not_the_hubs_fail_the_plan_and_write_nothing_outside(
    manager: Any, settings: Any, hub: Any, tmp_path: Path, case: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious")
    hub.faults.model_info[REPO] = hostile_answers(settings.cache_dir, outside)[case]

    with pytest.raises(DownloadFailed, match="nothing was downloaded") as failure:
        manager.download(REPO).wait(60)

    assert str(tmp_path) not in failure.value.message
    assert sorted(path.name for path in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "precious"
    # Planning reads config.json at the branch while it asks for the file list; no file is fetched.
    planning = f"/{REPO}/resolve/main/config.json"
    assert not any(
        ("/resolve/" in record.path and record.path != planning) or record.path.startswith("/cdn/")
        for record in hub.log
    )
    assert [path for path in tree(settings.cache_dir) if "/blobs/" in path] == []


def test_engine_refuses_a_planned_file_whose_id_is_not_a_hash(settings: Any, hub: Any, tmp_path: Path) -> None:
    """The engine checks ids itself, also for a plan not built by HubClient: no hash check is skipped."""
    engine = Engine(settings.cache_dir, endpoint=hub.url, token=None)
    repo = RepoCache(settings.cache_dir, REPO)
    config = PlannedFile(path=CONFIG, size=10, blob_id="abc123", sha256=None)

    with pytest.raises(DownloadFailed, match="40 or 64 hex digits"):
        engine.fetch_file(repo, "0" * 40, config)
    assert not settings.cache_dir.joinpath("models--tiny--gpt2").exists()


def test_a_regular_file_whose_bytes_are_not_its_blob_id_never_reaches_blobs(
    manager: Any, settings: Any, hub: Any
) -> None:
    hub.faults.model_info[REPO] = rewrite_sibling(CONFIG, blobId="0" * 40)

    with pytest.raises(DownloadFailed, match="failed verification twice"):
        manager.download(REPO).wait(60)
    assert not RepoCache(settings.cache_dir, REPO).blob("0" * 40).exists()


def test_a_range_answered_from_another_offset_is_refused_before_its_bytes_are_kept(
    manager: Any, settings: Any, hub: Any, fixture_repos: Any
) -> None:
    """The first connection is cut; the resume asks from the cut, the server answers from 1 KiB before
    it and says so: the download fails clearly, and the bytes already on disk stay for a resume."""
    hub.faults.set(path="/cdn/", cut_after_bytes=300_000, cut_times=1, range_shift=1024)

    with pytest.raises(DownloadFailed, match="Content-Range"):
        manager.download(REPO).wait(60)
    weights = fixture_repos[REPO].files[WEIGHTS]
    assert RepoCache(settings.cache_dir, REPO).partial(weights.sha256).stat().st_size == 300_000

    hub.faults.reset()
    record = manager.resume(manager.list()[0].id).wait(60)
    assert record.status == "ready"
    assert hashlib.sha256(Path(record.file_path, WEIGHTS).read_bytes()).hexdigest() == weights.sha256


def test_a_content_range_that_lies_is_caught_by_the_hash_and_fetched_again(
    manager: Any, settings: Any, hub: Any, fixture_repos: Any
) -> None:
    hub.faults.set(path="/cdn/", cut_after_bytes=300_000, cut_times=1, range_shift=1024, range_header_lies=True)

    record = manager.download(REPO).wait(60)

    weights = fixture_repos[REPO].files[WEIGHTS]
    assert hashlib.sha256(Path(record.file_path, WEIGHTS).read_bytes()).hexdigest() == weights.sha256
    whole = [
        r for r in hub.log if r.path.startswith("/cdn/") and r.path.endswith(WEIGHTS) and r.range.startswith("bytes=0-")
    ]
    assert len(whole) == 2, "the corrupt resume is discarded and the file fetched again from its first byte"
