"""The choices a catalog entry and its listing take, importable without SQLAlchemy or torch."""
from __future__ import annotations

from typing import Sequence

from .errors import InvalidArgument

QUANTIZATIONS = ("none", "bnb-8bit", "bnb-4bit")
DTYPES = ("auto", "float32", "float16", "bfloat16")
STATUSES = ("pending", "downloading", "ready", "cancelled", "failed", "interrupted")
ACTIVE_STATUSES = ("pending", "downloading")
SORTABLE = ("name", "repo_id", "status", "family", "params", "size_bytes", "created_at", "updated_at")


def validate_choice(field: str, value: object, allowed: Sequence[str]) -> str:
    """`value` if it is one of `allowed`, else InvalidArgument naming the choices."""
    if value not in allowed:
        raise InvalidArgument(f"unknown {field} {value!r}; expected one of: {', '.join(allowed)}")
    return value  # type: ignore[return-value]
