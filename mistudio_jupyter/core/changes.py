"""What changed in the catalog between two looks, whichever process changed it.

Downloads write their progress to the catalog from their own processes, and the CLI, a kernel or the
server may add or delete entries at any time. A `ChangeTracker` finds all of it the same way: it
compares every entry's `updated_at` with the previous look (one narrow query when nothing moved) and
reads the full rows only of what did. Deletions show up as ids that are gone, and no two hosts'
clocks have to agree.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import ModelRecord
    from .service import ModelManager


@dataclasses.dataclass(frozen=True)
class CatalogChanges:
    """Entries added or updated since the last look (least recently updated first), and ids deleted."""

    changed: list[ModelRecord]
    deleted: list[str]

    def __bool__(self) -> bool:
        return bool(self.changed or self.deleted)


class ChangeTracker:
    """`look()` returns the changes since the previous `look()`; the first one reports every entry.

    Each look first turns entries whose download worker is gone `interrupted`, as listing does.
    """

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager
        self._versions: dict[str, dt.datetime] = {}

    def look(self) -> CatalogChanges:
        self._manager.downloads.refresh_all()
        versions = self._manager.catalog.versions()
        deleted = [model_id for model_id in self._versions if model_id not in versions]
        moved = [model_id for model_id, at in versions.items() if self._versions.get(model_id) != at]
        changed = self._manager.catalog.get_many(moved) if moved else []
        # Rows read after `versions` may be newer still: remember what was reported, not what was listed.
        self._versions = {**versions, **{record.id: record.updated_at for record in changed}}
        return CatalogChanges(changed, deleted)
