"""Download widgets: the live progress of one catalog entry, and the download form (repo → preview →
start) that shows the progress of the download it started."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import traitlets

from ._base import STATIC, ManagerWidget, action, manager_or_shared

if TYPE_CHECKING:
    from ..core.catalog import ModelRecord
    from ..core.service import ModelManager


class DownloadState(ManagerWidget):
    """The `record` trait of the download shown, kept live from the catalog, with Cancel and Resume.

    Messages: `{action: "cancel", id}`, `{action: "resume", id}`.
    """

    record = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)

    def __init__(self, manager: ModelManager | None = None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.watch_catalog()

    @property
    def entry_id(self) -> str | None:
        """The catalog id of the download shown (None before one is started); `model_id` is ipywidgets'."""
        return (self.record or {}).get("id")

    @action("cancel")
    def cancel(self, id: str) -> None:
        """Cancel the download of entry `id` (its partial files stay, for resume)."""
        self._show(self.manager.cancel(id))

    @action("resume")
    def resume(self, id: str) -> None:
        """Resume the download of entry `id` from the bytes on disk."""
        self._show(self.manager.resume(id).record)

    def _show(self, record: ModelRecord) -> None:
        with self.changes() as open_:
            if open_ and self.entry_id == record.id:
                self.record = record.to_dict()

    def _on_catalog(self, records: list[ModelRecord]) -> None:
        with self.changes() as open_:
            if open_ and self.entry_id is not None:
                current = next((record for record in records if record.id == self.entry_id), None)
                self.record = current.to_dict() if current else None


class DownloadProgress(DownloadState):
    """Live progress of one catalog entry's download (started here or anywhere else), with Cancel and
    Resume buttons.

    >>> DownloadProgress(manager.download("tiny/gpt2").model_id)
    """

    _esm = STATIC / "download_progress.js"

    def __init__(self, entry_id: str, *, manager: ModelManager | None = None, **kwargs: Any) -> None:
        manager = manager_or_shared(manager)
        super().__init__(manager, record=manager.get(entry_id).to_dict(), **kwargs)


class DownloadForm(DownloadState):
    """Repo id → live preview (memory per quantization against this machine) → Start, then the
    download's progress.

    Traits: `preview` (for the repo id and revision last asked, echoed back), `record`, `error`.
    Messages: `{action: "preview", repo_id, revision}`, `{action: "download", repo_id, revision, option,
    token}` (`option` as the memory table names it, or the older `quantization` and `dtype`; the token goes to
    the download and nowhere else), and Cancel / Resume.
    """

    _esm = STATIC / "download_form.js"
    preview = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)

    @action("preview")
    def show_preview(self, repo_id: str, revision: str = "main") -> None:
        """Fetch the preview of `repo_id` at `revision` into the `preview` trait."""
        preview = self.manager.preview(repo_id, revision=revision or "main")
        with self.changes() as open_:
            if open_:
                self.preview = {**preview, "repo_id": repo_id, "revision": revision}

    @action("download")
    def start_download(
        self,
        repo_id: str,
        revision: str = "main",
        option: str | None = None,
        quantization: str | None = None,
        dtype: str | None = None,
        token: str | None = None,
    ) -> None:
        """Start (or join) the download of `repo_id` and show its progress in `record`."""
        handle = self.manager.download(
            repo_id,
            revision=revision or "main",
            option=option,
            quantization=quantization,
            dtype=dtype,
            token=token or None,
        )
        with self.changes() as open_:
            if open_:
                self.record = handle.record.to_dict()
