"""The load options a catalog entry can carry, importable without SQLAlchemy or torch."""
from __future__ import annotations

from typing import Sequence

from .errors import InvalidArgument

QUANTIZATIONS = ("none", "bnb-8bit", "bnb-4bit")
DTYPES = ("auto", "float32", "float16", "bfloat16")


def validate_choice(field: str, value: object, allowed: Sequence[str]) -> str:
    """`value` if it is one of `allowed`, else InvalidArgument naming the choices."""
    if value not in allowed:
        raise InvalidArgument(f"unknown {field} {value!r}; expected one of: {', '.join(allowed)}")
    return value  # type: ignore[return-value]
