"""The Hugging Face cache as huggingface_hub lays it out, plus our stable partial files.

`models--{org}--{name}/blobs/{etag}`, `snapshots/{commit}/{path}` (a relative link to the blob),
`refs/{revision}`; locks in `.locks/models--{org}--{name}/{etag}.lock` (the same ones
huggingface_hub takes, so our engine and `hf_hub_download` never write one blob at once).
Our partial file is `blobs/{etag}.mistudio.incomplete`: one per blob, reused by every attempt.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InsufficientDisk
from ..units import format_bytes
from ..hub import FilePlan, PlannedFile

PARTIAL_SUFFIX = ".mistudio.incomplete"
FREE_BYTES_ENV = "MISTUDIO_FREE_DISK_BYTES"
_PARTIAL_NAME = re.compile(r"^(?P<etag>[0-9a-f]+)(\.mistudio|\.[0-9a-f]{8})?\.incomplete$")


@dataclasses.dataclass(frozen=True)
class RepoCache:
    """The cache folder of one model repo."""

    cache_dir: Path
    repo_id: str

    @property
    def folder_name(self) -> str:
        return "models--" + self.repo_id.replace("/", "--")

    @property
    def root(self) -> Path:
        return self.cache_dir / self.folder_name

    def blob(self, etag: str) -> Path:
        return self.root / "blobs" / etag

    def partial(self, etag: str) -> Path:
        return self.root / "blobs" / f"{etag}{PARTIAL_SUFFIX}"

    def lock(self, etag: str) -> Path:
        return self.cache_dir / ".locks" / self.folder_name / f"{etag}.lock"

    def snapshot(self, commit: str) -> Path:
        return self.root / "snapshots" / commit

    def pointer(self, commit: str, path: str) -> Path:
        return self.snapshot(commit).joinpath(*path.split("/"))

    def link(self, blob: Path, pointer: Path) -> None:
        """Point `pointer` at `blob` with a relative symlink, replacing what was there."""
        pointer.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blob, pointer.parent)
        if pointer.is_symlink() and os.readlink(pointer) == target:
            return
        pointer.unlink(missing_ok=True)
        os.symlink(target, pointer)

    def write_ref(self, revision: str, commit: str) -> None:
        """Record that `revision` (a branch or tag) is `commit`, atomically; nothing for a commit hash."""
        if revision == commit:
            return
        ref = self.root / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        if ref.is_file() and ref.read_text() == commit:
            return
        temporary = ref.with_name(f"{ref.name}.{os.getpid()}.tmp")
        temporary.write_text(commit)
        os.replace(temporary, ref)

    def bytes_on_disk(self, file: PlannedFile) -> int:
        """How much of `file` is already here: all of it as a blob, or the valid part of our partial."""
        etag = file.etag or ""
        if self.blob(etag).exists():
            return file.size
        try:
            size = self.partial(etag).stat().st_size
        except OSError:
            return 0
        return size if size <= file.size else 0

    def partials(self) -> Iterator[tuple[Path, str]]:
        """Every partial file of this repo (ours and huggingface_hub's), with its etag.

        Links are never followed: a planted `blobs` or partial link must not lead outside the cache.
        """
        blobs = self.root / "blobs"
        if self.root.is_symlink() or blobs.is_symlink() or not blobs.is_dir():
            return
        for path in blobs.iterdir():
            match = _PARTIAL_NAME.match(path.name)
            if match and not path.is_symlink():
                yield path, match["etag"]


def missing_bytes(cache_dir: Path, plan: FilePlan) -> int:
    """Bytes a download of `plan` still has to fetch, given the blobs and partials on disk."""
    repo = RepoCache(cache_dir, plan.repo_id)
    return sum(file.size - repo.bytes_on_disk(file) for file in plan.files)


def free_bytes(path: Path) -> int:
    """Free space on the volume of `path`; `MISTUDIO_FREE_DISK_BYTES` overrides it (tests)."""
    override = os.environ.get(FREE_BYTES_ENV)
    if override:
        return int(override)
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def ensure_disk_space(cache_dir: Path, plan: FilePlan, margin_bytes: int) -> None:
    """Raise InsufficientDisk unless the bytes still missing, plus a margin, fit on the cache volume."""
    missing = missing_bytes(cache_dir, plan)
    if missing == 0:
        return
    free = free_bytes(cache_dir)
    needed = missing + margin_bytes
    if needed > free:
        raise InsufficientDisk(
            f"{plan.repo_id} needs {format_bytes(needed)}, {format_bytes(free)} free in {cache_dir}",
            needed_bytes=needed, free_bytes=free,
        )


def repo_caches(cache_dir: Path) -> Iterator[RepoCache]:
    """Every model repo folder in the cache."""
    if not cache_dir.is_dir():
        return
    for folder in sorted(cache_dir.glob("models--*")):
        if not folder.is_symlink():
            yield RepoCache(cache_dir, folder.name[len("models--"):].replace("--", "/"))


def sweep_partials(repos: Iterable[RepoCache]) -> tuple[list[str], int]:
    """Remove the partial files of `repos` that no process is writing; returns (paths, bytes freed).

    A writer (ours or huggingface_hub) holds the blob's lock while it writes, so a partial whose lock
    can be taken at once is an orphan.
    """
    from filelock import FileLock, Timeout

    removed: list[str] = []
    freed = 0
    for repo in repos:
        for path, etag in list(repo.partials()):
            lock_path = repo.lock(etag)
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with FileLock(str(lock_path), timeout=0):
                    size = path.stat().st_size
                    path.unlink()
            except (Timeout, FileNotFoundError):
                continue
            removed.append(str(path))
            freed += size
    return removed, freed


def delete_revision(cache_dir: Path, repo_id: str, commit: str) -> int:
    """Delete one cached revision with huggingface_hub's blob-aware strategy; returns bytes freed.

    Blobs still used by another revision of the repo stay.
    """
    if not cache_dir.is_dir():
        return 0
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(cache_dir)
    known = {revision.commit_hash for repo in info.repos if repo.repo_id == repo_id and repo.repo_type == "model"
             for revision in repo.revisions}
    if commit not in known:
        return 0
    strategy = info.delete_revisions(commit)
    strategy.execute()
    return strategy.expected_freed_size
