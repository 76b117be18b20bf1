"""A catalog entry as every front end shows it, and the rules of a catalog query, without SQLAlchemy.

Both catalogs use them: the SQLAlchemy one (`catalog.Catalog`) and the standard-library one that the
`mistudio list` and `mistudio cancel` commands read (`sqlite_catalog.SQLiteCatalog`), so the two agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from .errors import InvalidArgument, NotFound
from .options import SORTABLE

INT64_MAX = 2**63 - 1


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Entries(Protocol):
    """What finding an entry needs of a catalog."""

    def get(self, model_id: str) -> Any: ...

    def list(self, **filters: Any) -> list[Any]: ...


def valid_id(model_id: object) -> str:
    """`model_id` when it can be a catalog id; InvalidArgument otherwise."""
    if not isinstance(model_id, str) or not model_id or len(model_id) > 64 or "/" in model_id or ".." in model_id:
        raise InvalidArgument(f"{model_id!r} is not a model id")
    return model_id


def resolve(catalog: Entries, repo_or_id: str) -> Any | None:
    """The entry named by an id, else the newest entry of a repo id; None when neither."""
    try:
        return catalog.get(repo_or_id)
    except NotFound:
        matches = catalog.list(repo_id=repo_or_id, sort="-updated_at", limit=1)
        return matches[0] if matches else None


def check_counts(**values: int | None) -> None:
    """Refuse a count filter (min_params, limit, …) that no catalog column can hold."""
    for name, value in values.items():
        if value is not None and not 0 <= value <= INT64_MAX:
            raise InvalidArgument(f"{name} must be between 0 and {INT64_MAX}, got {value}")


def like_pattern(text: str) -> str:
    """A LIKE pattern (escape character `\\`) matching names that contain `text` literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def sort_order(sort: str) -> tuple[str, bool]:
    """'-created_at' → ('created_at', descending=True); a field that cannot be sorted by is refused."""
    field = sort.lstrip("-+")
    if field not in SORTABLE:
        raise InvalidArgument(f"cannot sort by {field!r}; expected one of: {', '.join(SORTABLE)}")
    return field, sort.startswith("-")


class RecordView:
    """The record JSON of a catalog entry; mixed into each catalog's row class, which has the columns."""

    def to_dict(self) -> dict[str, Any]:
        """The record JSON shared by REST, CLI `--json` and widget traits."""
        total = self.bytes_total or 0
        progress = 1.0 if self.status == "ready" else (min(self.bytes_done / total, 1.0) if total else 0.0)
        error = {"code": self.error_code, "message": self.error_message} if self.error_code else None
        return {
            "id": self.id,
            "name": self.name,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "status": self.status,
            "quantization": self.quantization,
            "dtype": self.dtype,
            "family": self.family,
            "model_type": self.model_type,
            "params": self.params,
            "size_bytes": self.size_bytes,
            "file_path": self.file_path,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "progress": progress,
            "speed_bps": self.speed_bps,
            "eta_s": self.eta_s,
            "current_file": self.current_file,
            "connections": self.connections,
            "error": error,
            "note": self.note,
            "requested_by": self.requested_by,
            "gated": self.gated,
            "summary": (self.architecture or {}).get("summary"),
            "measured_memory_bytes": self.measured_memory_bytes,
            "load_time_s": self.load_time_s,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()
