"""One file being downloaded: its stable partial file, the journal of what is written, and the hash
that follows the written prefix.

Streams write blocks at their offsets (`write`). The hash (sha256 for LFS files, the git blob sha1
otherwise) must see the bytes in file order, so each file keeps a frontier: a block written at the
frontier goes to a hash thread from memory; a block written ahead of it is copied while a shared
memory budget allows, else it is read back from the file once the frontier reaches it. Finishing a
file therefore never means reading all of it again, and memory stays bounded.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import queue
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import Cancelled, DownloadFailed, InsufficientDisk, MiStudioError
from ..hub import PlannedFile
from ..units import format_bytes
from .cache import RepoCache
from .journal import Journal, read_written
from .ranges import RangeSet

BLOCK_BYTES = 1 << 20
# A block goes to the file in pieces this large. On a VM that returns free memory to its host (free page
# reporting), a download writing 1 GiB in 1 MiB pieces at 1 MiB offsets spent 2-4x the CPU in the write
# of the same bytes in these pieces, most likely because Linux gives such writes page-cache folios as
# large, which the host backs again page by page. The cost here: three more system calls per block.
WRITE_PIECE_BYTES = 256 << 10
DISK_WINDOW_BYTES = 8 << 20
POLL_S = 0.2


class BlockPool:
    """Receive blocks, reused: at most `capacity` exist, so a receiver that runs ahead of the hash waits."""

    def __init__(self, capacity: int) -> None:
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self._left = capacity
        self._lock = threading.Lock()

    def take(self, stop: threading.Event) -> memoryview:
        with contextlib.suppress(queue.Empty):
            return self._free.get_nowait()
        with self._lock:
            if self._left:
                self._left -= 1
                # Anonymous memory, not a bytearray (which zeroes every byte): a block touches only the pages
                # it receives into, so 32 streams of small files do not fault in 32 MiB.
                return memoryview(mmap.mmap(-1, BLOCK_BYTES))
        while True:
            try:
                return self._free.get(timeout=POLL_S)
            except queue.Empty:
                if stop.is_set():
                    raise Cancelled("download cancelled") from None

    def give(self, block: memoryview) -> None:
        self._free.put(block)


class MemoryBudget:
    """Bytes that may be held as copies of blocks written ahead of a file's hash frontier."""

    def __init__(self, limit: int) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def take(self, count: int) -> bool:
        with self._lock:
            if count > self._left:
                return False
            self._left -= count
            return True

    def give(self, count: int) -> None:
        with self._lock:
            self._left += count


class HashThreads:
    """A few threads that hash files in order; each file always goes to the same thread."""

    def __init__(self, count: int, pool: BlockPool, budget: MemoryBudget) -> None:
        self.pool, self.budget = pool, budget
        self._queues: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(count)]
        self._threads = [
            threading.Thread(target=self._run, args=(q,), name="mistudio-hash", daemon=True) for q in self._queues
        ]
        for thread in self._threads:
            thread.start()

    def put(self, target: PartialFile, item: tuple[int, int, int, memoryview | bytes | None, bool]) -> None:
        self._queues[target.index % len(self._queues)].put((target, item))

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self, items: queue.SimpleQueue[Any]) -> None:
        while (entry := items.get()) is not None:
            target, (generation, offset, length, data, pooled) = entry
            try:
                target.hash(generation, offset, length, data)
            except Exception as error:  # noqa: BLE001 - e.g. the file shrank under the mapping
                target.hash_failed(error)
            finally:
                if pooled:
                    self.pool.give(data)  # type: ignore[arg-type]
                elif data is not None:
                    self.budget.give(length)


class PartialFile:
    """The partial file of one blob while streams write into it; `on_hashed(self)` is called (from a
    hash thread) once every byte is hashed, or once hashing failed."""

    def __init__(
        self,
        index: int,
        repo: RepoCache,
        file: PlannedFile,
        hashing: HashThreads,
        on_hashed: Callable[[PartialFile], None],
    ) -> None:
        self.index = index
        self.file = file
        self.size = file.size
        self.path = repo.partial(file.etag or "")
        self.legacy_path = repo.legacy_partial(file.etag or "")
        self.blob = repo.blob(file.etag or "")
        self._hashing = hashing
        self._on_hashed = on_hashed
        self._mutex = threading.Lock()
        self._fd = -1
        self._journal: Journal | None = None
        self.written = RangeSet()
        self.error: Exception | None = None
        self._generation = 0
        self._reset_hash()

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self, *, fresh: bool = False) -> None:
        """Open the partial file with what it already holds (nothing when `fresh`) and start hashing
        its written prefix from disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() and self.legacy_path.is_file() and not self.legacy_path.is_symlink():
            os.replace(self.legacy_path, self.path)  # an earlier engine's partial: its bytes are its prefix
        if fresh:
            self.path.unlink(missing_ok=True)
        self.written = RangeSet() if fresh else read_written(self.path, self.size)
        self._journal = Journal(self.path, self.written)  # written before any byte beyond the prefix
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o666)
        self._reset_hash()
        with self._mutex:
            self._advance()
        if self.size == 0:
            self._on_hashed(self)

    def restart(self) -> None:
        """Forget every byte (a failed verification, or a server that ignores ranges): start empty."""
        self.close()
        self.open(fresh=True)

    def sync(self) -> None:
        if self._journal is not None:
            self._journal.sync(self._fd)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def complete(self) -> None:
        """The verified partial becomes the blob; its journal goes."""
        journal = self._journal
        self.close()
        self.blob.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, self.blob)
        if journal is not None:
            journal.remove()

    def discard(self) -> None:
        """Remove the partial and its journal (corrupt bytes)."""
        journal = self._journal
        self.close()
        self.path.unlink(missing_ok=True)
        if journal is not None:
            journal.remove()

    @property
    def digest(self) -> str | None:
        """The hash of the whole file once every byte is hashed."""
        return self._hasher.hexdigest() if self._hashed == self.size and self.error is None else None

    @property
    def expected_digest(self) -> str:
        return self.file.sha256 or self.file.blob_id or ""

    # -- writing -------------------------------------------------------------------------------

    def write(self, offset: int, block: memoryview, length: int) -> bool:
        """Write `block[:length]` at `offset` and record it; returns whether the block was handed to
        the hash (the caller then takes a new one)."""
        view, position = block[:length], offset
        try:
            while view:
                count = os.pwrite(self._fd, view[:WRITE_PIECE_BYTES], position)
                view, position = view[count:], position + count
        except OSError as error:
            raise write_error(self.path, error) from error
        with self._mutex:
            self.written.add(offset, offset + length)
            if self._journal is not None:
                self._journal.record(offset, offset + length)
            if offset == self._frontier:
                self._frontier += length
                self._hashing.put(self, (self._generation, offset, length, block, True))
                self._advance()
                return True
            if self._hashing.budget.take(length):
                self._pending[offset] = bytes(block[:length])
            return False

    def _advance(self) -> None:
        """Hand the hash everything now contiguous with the frontier: copies held in memory, else a
        read of the written bytes from the file."""
        while True:
            held = self._pending.pop(self._frontier, None)
            if held is not None:
                self._hashing.put(self, (self._generation, self._frontier, len(held), held, False))
                self._frontier += len(held)
                continue
            written_to = self.written.prefix()
            if written_to <= self._frontier:
                return
            ahead = [offset for offset in self._pending if offset > self._frontier]
            stop = min([written_to, *ahead])
            self._hashing.put(self, (self._generation, self._frontier, stop - self._frontier, None, False))
            self._frontier = stop

    # -- hashing (hash threads) ------------------------------------------------------------------

    def _reset_hash(self) -> None:
        self._generation += 1
        self._hasher = _new_hasher(self.file)
        self._frontier = 0
        self._hashed = 0
        self._pending: dict[int, bytes] = {}
        self.error = None

    def hash(self, generation: int, offset: int, length: int, data: memoryview | bytes | None) -> None:
        if generation != self._generation or self.error is not None:
            return  # queued before a restart
        if data is None:
            self._hash_from_disk(offset, length)
        else:
            self._hasher.update(data[:length])
        self._hashed += length
        if self._hashed == self.size:
            self._on_hashed(self)

    def hash_failed(self, error: Exception) -> None:
        self.error = DownloadFailed(f"cannot hash {self.path.name}: {error}")
        self._on_hashed(self)

    def _hash_from_disk(self, offset: int, length: int) -> None:
        with open(self.path, "rb", buffering=0) as reader:
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            end = offset + length
            for window_start in range(start, end, DISK_WINDOW_BYTES):
                window_length = min(end - window_start, DISK_WINDOW_BYTES)
                with mmap.mmap(reader.fileno(), window_length, offset=window_start, access=mmap.ACCESS_READ) as window:
                    with memoryview(window) as view:
                        self._hasher.update(view[max(0, offset - window_start) :])


def write_error(path: Path, error: OSError) -> MiStudioError:
    """A full disk (or quota) is `insufficient_disk`, resumable once there is room; anything else fails."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(path.parent).free
        return InsufficientDisk(
            f"the disk filled while writing {path.name}: {format_bytes(free)} free in the "
            "cache's volume; free some space and resume"
        )
    return DownloadFailed(f"cannot write {path.name}: {error.strerror}")


def _new_hasher(file: PlannedFile) -> Any:
    """sha256 for LFS files; for regular files the git blob sha1, whose header is the size. Every
    file is verified: a plan only holds files with one of the two."""
    if file.sha256:
        return hashlib.sha256()
    hasher = hashlib.sha1()
    hasher.update(b"blob %d\0" % file.size)
    return hasher


__all__ = ["BLOCK_BYTES", "BlockPool", "HashThreads", "MemoryBudget", "PartialFile", "write_error"]
