"""ModelManager: the one facade that every front end (REST, widgets, CLI, magics) calls."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import DTYPES, QUANTIZATIONS, Catalog, ModelRecord, validate_choice
from .errors import InvalidArgument, NotFound
from .hub import HubClient, validate_repo_id, validate_revision
from .settings import Settings

if TYPE_CHECKING:
    import pandas


class ModelManager:
    """Preview, download, catalogue, inspect and load Hugging Face models.

    >>> manager = ModelManager()                      # settings from the environment
    >>> manager.preview("google/gemma-2-2b")["memory"]["bnb-4bit"]["total_bytes"]
    >>> handle = manager.download("google/gemma-2-2b", quantization="bnb-4bit"); handle.wait()
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or Settings.from_env(**overrides)
        self.catalog = Catalog(self.settings.db_url)
        self.hub = HubClient(self.settings)
        self._downloads: Any = None

    def close(self) -> None:
        self.catalog.close()

    # -- catalog -------------------------------------------------------------------------------

    def get(self, model_id: str) -> ModelRecord:
        """The catalog entry with this id."""
        return self.catalog.get(_valid_id(model_id))

    def list(self, **filters: Any) -> list[ModelRecord]:
        """Catalog entries matching the filters (family, quantization, status, min_params,
        max_params, q, sort, limit, offset)."""
        return self.catalog.list(**filters)

    def dataframe(self, **filters: Any) -> "pandas.DataFrame":
        """The catalog entries as a pandas DataFrame, one row per entry."""
        import pandas

        columns = ["id", "name", "repo_id", "revision", "status", "quantization", "dtype", "family",
                   "params", "size_bytes", "progress", "updated_at"]
        rows = [record.to_dict() for record in self.list(**filters)]
        return pandas.DataFrame(rows, columns=columns)

    def adopt_cache(self) -> list[ModelRecord]:
        """Add the complete models already in the Hugging Face cache as ready entries."""
        return self.catalog.adopt(self.settings.cache_dir)

    def add(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        quantization: str = "none",
        dtype: str = "auto",
        name: str | None = None,
    ) -> ModelRecord:
        """Create a pending entry (or return the existing one with the same repo, revision and options)."""
        validate_repo_id(repo_id)
        validate_revision(revision or "main")
        validate_choice("quantization", quantization, QUANTIZATIONS)
        validate_choice("dtype", dtype, DTYPES)
        record, _ = self.catalog.add(repo_id, revision=revision or "main", quantization=quantization,
                                     dtype=dtype, name=name)
        return record

    def resolve(self, repo_or_id: str) -> ModelRecord | None:
        """The catalog entry named by an id, else the newest entry of a repo id; None when neither."""
        try:
            return self.catalog.get(repo_or_id)
        except NotFound:
            matches = self.catalog.list(repo_id=repo_or_id, sort="-updated_at", limit=1)
            return matches[0] if matches else None


def _valid_id(model_id: object) -> str:
    if not isinstance(model_id, str) or not model_id or len(model_id) > 64 or "/" in model_id or ".." in model_id:
        raise InvalidArgument(f"{model_id!r} is not a model id")
    return model_id


def snapshot_path(record: ModelRecord) -> Path:
    if record.status != "ready" or not record.file_path:
        raise InvalidArgument(f"{record.name} is not downloaded yet (status: {record.status})")
    return Path(record.file_path)
