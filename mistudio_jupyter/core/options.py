"""The words every front end uses for a catalog entry, importable without SQLAlchemy or torch.

The JS views read these lists from js/views/options.js, generated from this module by
`python -m mistudio_jupyter.core.options js/views/options.js` and checked in (the widgets and the sidebar build
from it without Python); tests/unit/test_options.py fails when it no longer matches.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import InvalidArgument

QUANTIZATIONS = ("none", "bnb-8bit", "bnb-4bit")
DTYPES = ("auto", "float32", "float16", "bfloat16")
STATUSES = ("pending", "downloading", "ready", "cancelled", "failed", "interrupted")
ACTIVE_STATUSES = ("pending", "downloading")
RESUMABLE_STATUSES = ("cancelled", "failed", "interrupted")
SORTABLE = ("name", "repo_id", "status", "family", "params", "size_bytes", "created_at", "updated_at")


def validate_choice(field: str, value: object, allowed: Sequence[str]) -> str:
    """`value` if it is one of `allowed`, else InvalidArgument naming the choices."""
    if value not in allowed:
        raise InvalidArgument(f"unknown {field} {value!r}; expected one of: {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def javascript_module() -> str:
    """js/views/options.js: these lists as ES module exports for the views."""
    exports: dict[str, Any] = {
        "STATUSES": STATUSES,
        "ACTIVE_STATUSES": ACTIVE_STATUSES,
        "RESUMABLE_STATUSES": RESUMABLE_STATUSES,
        "QUANTIZATIONS": QUANTIZATIONS,
    }
    header = ("// Generated from mistudio_jupyter/core/options.py by "
              "`python -m mistudio_jupyter.core.options js/views/options.js`: do not edit.")
    return "\n".join([header, *(f"export const {name} = {json.dumps(value)};" for name, value in exports.items())]) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(javascript_module(), encoding="utf-8")
