"""Sets of byte ranges: what of a file is written, what is still missing."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RangeSet:
    """Disjoint, sorted, non-adjacent `[start, end)` byte ranges."""

    def __init__(self, spans: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in spans:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        """Add `[start, end)`, merging it with every range it touches."""
        if end <= start:
            return
        first = bisect.bisect_left(self._ends, start)  # first range ending at or after `start`
        last = bisect.bisect_right(self._starts, end)  # ranges from `last` on start after `end`
        if first < last:
            start, end = min(start, self._starts[first]), max(end, self._ends[last - 1])
        self._starts[first:last] = [start]
        self._ends[first:last] = [end]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends))

    def __len__(self) -> int:
        return len(self._starts)

    def covered(self) -> int:
        """How many bytes the ranges hold."""
        return sum(end - start for start, end in self)

    def prefix(self) -> int:
        """The end of the range that starts at byte 0 (0 when byte 0 is missing)."""
        return self._ends[0] if self._starts and self._starts[0] == 0 else 0

    def gaps(self, size: int) -> list[tuple[int, int]]:
        """The missing `[start, end)` ranges of a file of `size` bytes."""
        missing, position = [], 0
        for start, end in self:
            if start >= size:
                break
            if start > position:
                missing.append((position, start))
            position = max(position, end)
        if position < size:
            missing.append((position, size))
        return missing
