"""Find complete model revisions already in a Hugging Face cache, so the catalog can adopt them.

Adoption runs whenever the cache changed since the last look: `cache_fingerprint` tells, with a few
stat calls per repo and no import beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".incomplete"  # huggingface_hub's `{etag}.incomplete` and our `{etag}.mistudio.incomplete`


@dataclasses.dataclass(frozen=True)
class CachedRevision:
    repo_id: str
    revision: str
    commit: str
    snapshot: Path
    size_bytes: int
    config: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        """Catalog fields of a ready entry for this revision, as a download of ours records them."""
        from .anatomy.families import family_of
        from .snapshot import count_params, local_tensors

        model_type = self.config.get("model_type")
        return {
            "commit": self.commit,
            "file_path": str(self.snapshot),
            "size_bytes": self.size_bytes,
            "bytes_done": self.size_bytes,
            "bytes_total": self.size_bytes,
            "model_type": model_type,
            "family": family_of(model_type) if model_type else None,
            "params": count_params(local_tensors(self.snapshot)),
        }


def cache_fingerprint(cache_dir: Path) -> str:
    """A digest of everything adoption depends on: the model repo folders, their blobs (a partial
    file appears or completes), the entries of each snapshot and the refs."""
    digest = hashlib.sha256(str(cache_dir).encode())
    for repo in _entries(cache_dir):
        if not repo.name.startswith("models--") or repo.is_symlink():
            continue
        digest.update(b"\0repo " + repo.name.encode())
        root = Path(repo.path)
        digest.update(b"\0blobs " + "/".join(sorted(entry.name for entry in _entries(root / "blobs"))).encode())
        for snapshot in sorted(_entries(root / "snapshots"), key=lambda entry: entry.name):
            names = "/".join(sorted(entry.name for entry in _entries(Path(snapshot.path))))
            digest.update(f"\0snapshot {snapshot.name} {names}".encode())
        for ref in sorted(_entries(root / "refs"), key=lambda entry: entry.name):
            stat = ref.stat()
            digest.update(f"\0ref {ref.name} {stat.st_mtime_ns} {stat.st_size}".encode())
    return digest.hexdigest()


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []


def cached_model_revisions(cache_dir: Path) -> Iterator[CachedRevision]:
    """Every model revision in `cache_dir` whose config and weights are all present.

    Repos that a download is writing to right now are left for a later look.
    """
    if not cache_dir.is_dir():
        return
    from .downloads.cache import scan_cache
    from .snapshot import read_json

    for repo in scan_cache(cache_dir).repos:
        if repo.repo_type != "model" or _being_downloaded(cache_dir, Path(repo.repo_path)):
            continue
        for revision in repo.revisions:
            snapshot = Path(revision.snapshot_path)
            config = read_json(snapshot / "config.json")
            if config is None or not _complete(cache_dir, repo.repo_id, revision.commit_hash, snapshot):
                continue
            refs = sorted(revision.refs)
            yield CachedRevision(
                repo_id=repo.repo_id,
                revision=refs[0] if refs else revision.commit_hash,
                commit=revision.commit_hash,
                snapshot=snapshot,
                size_bytes=revision.size_on_disk,
                config=config,
            )


def _being_downloaded(cache_dir: Path, repo_path: Path) -> bool:
    """Whether a partial file of the repo is being written: its writer (huggingface_hub or ours)
    holds the blob's lock. An interrupted download's partial is left behind unlocked."""
    from filelock import FileLock, Timeout

    for entry in _entries(repo_path / "blobs"):
        if entry.name.endswith(PARTIAL_SUFFIX):
            etag = entry.name.split(".", 1)[0]
            try:
                with FileLock(str(cache_dir / ".locks" / repo_path.name / f"{etag}.lock"), timeout=0):
                    pass
            except Timeout:
                return True
    return False


def _complete(cache_dir: Path, repo_id: str, commit: str, snapshot: Path) -> bool:
    """Whether the snapshot holds, at their full size, the config and every weight file a download of
    ours would fetch. The revision's file list is the tree listing that huggingface_hub's
    `snapshot_download` keeps; without one, the shards of the index (or any weight file) must do."""
    from .downloads.cache import size_if_present

    expected = _expected_files(cache_dir, repo_id, commit)
    if expected is None:
        return _weights_present(snapshot)
    return all(size_if_present(snapshot / path) == size for path, size in expected.items())


def _expected_files(cache_dir: Path, repo_id: str, commit: str) -> dict[str, int] | None:
    """Path → size of the config and weight files of the revision, from the cached tree listing."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    from .hub import PICKLE_PATTERNS, SAFETENSORS_PATTERNS, select_files

    try:
        tree = {file.path: file.size for file in get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache_dir)}
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        return None
    weights = SAFETENSORS_PATTERNS + PICKLE_PATTERNS
    needed = [
        path
        for path in select_files(list(tree))[0]
        if path == "config.json" or any(fnmatch.fnmatch(path, pattern) for pattern in weights)
    ]
    return {path: tree[path] for path in needed}


def _weights_present(snapshot: Path) -> bool:
    from .snapshot import read_json

    index = read_json(snapshot / "model.safetensors.index.json")
    if index is not None:
        shards = set(index.get("weight_map", {}).values())
        return bool(shards) and all((snapshot / shard).is_file() for shard in shards)
    return any(path.is_file() for path in snapshot.glob("*.safetensors")) or any(
        path.is_file() for path in snapshot.glob("pytorch_model*.bin")
    )
