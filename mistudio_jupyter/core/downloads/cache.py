"""The Hugging Face cache as huggingface_hub lays it out, plus our stable partial files.

`models--{org}--{name}/blobs/{etag}`, `snapshots/{commit}/{path}` (a relative link to the blob),
`refs/{revision}`; locks in `.locks/models--{org}--{name}/{etag}.lock` (the same ones
huggingface_hub takes, so our engine and `hf_hub_download` never write one blob at once).
Our partial file of a blob, reused by every attempt, is `.locks/mistudio/partials/models--{org}--{name}/
{etag}.part` with its journal beside it: `.locks` is the one folder that `hf cache prune` and `hf cache rm`
never touch, so a running or paused download survives them. (Partials of the earlier single-stream
engine, `blobs/{etag}.mistudio.incomplete`, are moved there when their download resumes.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import DownloadFailed, InsufficientDisk, InvalidArgument
from ..hub import (
    GIT_OBJECT_ID,
    SHA256,
    FilePlan,
    PlannedFile,
    is_git_object_id,
    is_safe_repo_path,
    is_sha256,
    validate_revision,
)
from ..units import format_bytes
from .journal import journal_path, read_written

PARTIALS_DIR = (".locks", "mistudio", "partials")
PARTIAL_SUFFIX = ".part"
LEGACY_PARTIAL_SUFFIX = ".mistudio.incomplete"
FREE_BYTES_ENV = "MISTUDIO_FREE_DISK_BYTES"
SCAN_ATTEMPTS = 20
_ETAG = f"(?P<etag>{GIT_OBJECT_ID}|{SHA256})"
_PART_NAME = re.compile(rf"^{_ETAG}\.part$")
_INCOMPLETE_NAME = re.compile(rf"^{_ETAG}(\.mistudio|\.[0-9a-f]{{8}})?\.incomplete$")


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
        return self.root / "blobs" / _checked_etag(etag)

    @property
    def partials_dir(self) -> Path:
        return self.cache_dir.joinpath(*PARTIALS_DIR, self.folder_name)

    def partial(self, etag: str) -> Path:
        return self.partials_dir / f"{_checked_etag(etag)}{PARTIAL_SUFFIX}"

    def legacy_partial(self, etag: str) -> Path:
        return self.root / "blobs" / f"{_checked_etag(etag)}{LEGACY_PARTIAL_SUFFIX}"

    def lock(self, etag: str) -> Path:
        return self.cache_dir / ".locks" / self.folder_name / f"{_checked_etag(etag)}.lock"

    def snapshot(self, commit: str) -> Path:
        if not is_git_object_id(commit):
            raise DownloadFailed("refusing a commit id that is not 40 hex digits as a snapshot folder")
        return self.root / "snapshots" / commit

    def pointer(self, commit: str, path: str) -> Path:
        if not is_safe_repo_path(path):
            raise DownloadFailed("refusing a file name that would leave its snapshot folder")
        return self.snapshot(commit).joinpath(*path.split("/"))

    def link(self, blob: Path, pointer: Path) -> None:
        """Point `pointer` at `blob` with a relative symlink, replacing what was there."""
        pointer.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blob, pointer.parent)
        if pointer.is_symlink() and os.readlink(pointer) == target:
            return
        pointer.unlink(missing_ok=True)
        os.symlink(target, pointer)

    def ref(self, revision: str) -> Path:
        """The file recording which commit `revision` (a branch or tag) is."""
        try:
            validate_revision(revision)
        except InvalidArgument:
            raise DownloadFailed("refusing a revision that would leave the repo's refs folder") from None
        return self.root / "refs" / revision

    def write_ref(self, revision: str, commit: str) -> None:
        """Record that `revision` (a branch or tag) is `commit`, atomically; nothing for a commit hash."""
        if revision == commit:
            return
        ref = self.ref(revision)
        ref.parent.mkdir(parents=True, exist_ok=True)
        if ref.is_file() and ref.read_text() == commit:
            return
        temporary = ref.with_name(f"{ref.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(commit)
            os.replace(temporary, ref)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise DownloadFailed(f"cannot record revision {revision!r} of {self.repo_id}: {error.strerror}") from None

    def bytes_on_disk(self, file: PlannedFile) -> int:
        """How much of `file` is already here: all of it as a blob, or what its partial holds."""
        etag = file.etag or ""
        if self.blob(etag).exists():
            return file.size
        partial = self.partial(etag)
        if not partial.exists() and self.legacy_partial(etag).exists():
            partial = self.legacy_partial(etag)
        return read_written(partial, file.size).covered()

    def partials(self) -> Iterator[tuple[Path, str]]:
        """Every partial file of this repo (ours, and huggingface_hub's in `blobs/`), with its etag.

        Links are never followed: a planted folder or partial link must not lead outside the cache.
        """
        for folder, pattern in ((self.partials_dir, _PART_NAME), (self.root / "blobs", _INCOMPLETE_NAME)):
            if any(path.is_symlink() for path in (folder, folder.parent)) or not folder.is_dir():
                continue
            try:
                entries = list(folder.iterdir())
            except FileNotFoundError:  # the repo was deleted meanwhile
                continue
            for path in entries:
                match = pattern.match(path.name)
                if match and not path.is_symlink():
                    yield path, match["etag"]


def _checked_etag(etag: str) -> str:
    """`etag` when it is a git blob id or a sha256: it names files, so nothing else may become a path."""
    if not (is_git_object_id(etag) or is_sha256(etag)):
        raise DownloadFailed("refusing a blob id that is not 40 or 64 hex digits as a cache file name")
    return etag


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
            needed_bytes=needed,
            free_bytes=free,
        )


def repo_caches(cache_dir: Path) -> Iterator[RepoCache]:
    """Every model repo with a folder or partial files in the cache."""
    names: set[str] = set()
    for folder in (cache_dir, cache_dir.joinpath(*PARTIALS_DIR)):
        if folder.is_dir() and not folder.is_symlink():
            names.update(path.name for path in folder.glob("models--*") if not path.is_symlink())
    for name in sorted(names):
        yield RepoCache(cache_dir, name[len("models--") :].replace("--", "/"))


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
                    journal_path(path).unlink(missing_ok=True)
            except (Timeout, FileNotFoundError):
                continue
            removed.append(str(path))
            freed += size
    return removed, freed


def size_if_present(path: Path) -> int | None:
    """The size of a file that may be gone, or unreadable, by now (a partial that became its blob); None then."""
    try:
        return path.stat().st_size
    except OSError:
        return None


def scan_cache(cache_dir: Path) -> Any:
    """huggingface_hub's `scan_cache_dir`, looked at again when another process removes a repo folder
    while it reads the cache (a delete or `hf cache rm` at the same moment)."""
    from huggingface_hub import scan_cache_dir

    for _ in range(SCAN_ATTEMPTS - 1):
        with contextlib.suppress(FileNotFoundError):
            return scan_cache_dir(cache_dir)
    return scan_cache_dir(cache_dir)


def delete_revision(cache_dir: Path, repo_id: str, commit: str) -> int:
    """Delete one cached revision with huggingface_hub's blob-aware strategy; returns bytes freed.

    Blobs still used by another revision of the repo stay.
    """
    if not cache_dir.is_dir():
        return 0
    info = scan_cache(cache_dir)
    known = {
        revision.commit_hash
        for repo in info.repos
        if repo.repo_id == repo_id and repo.repo_type == "model"
        for revision in repo.revisions
    }
    if commit not in known:
        return 0
    strategy = info.delete_revisions(commit)
    strategy.execute()
    return strategy.expected_freed_size
