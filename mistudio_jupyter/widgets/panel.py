"""The models panel: the catalog as cards with filters, and the download form or an architecture
viewer opened in place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import traitlets

from ._base import STATIC, action, manager_or_shared
from .architecture import ArchitectureState
from .downloads import DownloadForm

if TYPE_CHECKING:
    from ..core.catalog import ModelRecord
    from ..core.service import ModelManager

FILTERS = {"text": "", "family": "", "quantization": "", "status": "", "min_params": None, "max_params": None}


class ModelsPanel(DownloadForm, ArchitectureState):
    """Every catalog entry as a card (live while downloading), filters, a Download form and the
    architecture viewer of a chosen model.

    Traits: `models` (records), `filters` (set by the view; {text, family, quantization, status,
    min_params, max_params}), plus those of the download form and the architecture viewer.
    Messages from the cards: `{action: "architecture"|"delete"|"cancel"|"resume", id}`.
    """

    _esm = STATIC / "models_panel.js"
    models = traitlets.List(traitlets.Dict()).tag(sync=True)
    filters = traitlets.Dict(default_value=FILTERS).tag(sync=True)

    def __init__(self, manager: ModelManager | None = None, **kwargs: Any) -> None:
        manager = manager_or_shared(manager)
        super().__init__(manager, models=[record.to_dict() for record in manager.list()], **kwargs)

    @action("architecture")
    def open_architecture(self, id: str) -> None:
        """Show the architecture and hook points of entry `id` in the panel."""
        self.show(id)

    @action("delete")
    def delete(self, id: str) -> None:
        """Delete entry `id` and the cached files no other entry uses."""
        self.manager.delete(id)
        self._on_catalog(self.manager.list())

    def _on_catalog(self, records: list[ModelRecord]) -> None:
        with self.changes() as open_:
            if open_:
                super()._on_catalog(records)
                self.models = [record.to_dict() for record in records]
