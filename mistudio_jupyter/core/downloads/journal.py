"""The journal of a partial file: which byte ranges are written, so a resume fetches only the rest.

Streams write at their own offsets, so the partial file's size says nothing about what it holds. Each
written range is appended to `{partial}.journal` as a `start end` line right after the bytes reach the
file; a kill therefore loses at most the blocks in flight. The journal is synced to disk on a schedule
(`sync`) and compacted when it is opened. A partial file without a journal was written front to back
(by an earlier single-stream engine): its bytes are its written prefix.
"""

from __future__ import annotations

import os
from pathlib import Path

from .ranges import RangeSet

SUFFIX = ".journal"


def journal_path(partial: Path) -> Path:
    return partial.with_name(partial.name + SUFFIX)


def read_written(partial: Path, size: int) -> RangeSet:
    """What of a file of `size` bytes its partial holds: from the journal, else its front-to-back size."""
    journal = journal_path(partial)
    try:
        text = journal.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        try:
            length = partial.stat().st_size
        except FileNotFoundError:
            return RangeSet()
        return RangeSet([(0, length)] if length <= size else [])
    written = RangeSet()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and all(part.isdigit() for part in parts):  # a torn last line is skipped
            start, end = int(parts[0]), int(parts[1])
            if end <= size:
                written.add(start, end)
    return written


class Journal:
    """The append-only journal of one partial file, opened with what is already written."""

    def __init__(self, partial: Path, written: RangeSet) -> None:
        self.path = journal_path(partial)
        if not written:  # nothing to keep: a fresh journal, in one call (a plan opens many small files)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o666)
            return
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text("".join(f"{start} {end}\n" for start, end in written), encoding="ascii")
        os.replace(temporary, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def record(self, start: int, end: int) -> None:
        """`[start, end)` has been written to the partial file."""
        os.write(self._fd, f"{start} {end}\n".encode("ascii"))

    def sync(self, partial_fd: int) -> None:
        """Make the partial's bytes, then the journal that describes them, durable."""
        os.fdatasync(partial_fd)
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
