"""The words every front end uses for a catalog entry and how it loads, importable without SQLAlchemy or torch.

Load options are named as the memory table names them (`fp32 fp16 bf16 bnb-8bit bnb-4bit bnb-4bit-dq`); the
older `quantization`/`dtype` pair maps onto them here and nowhere else. The JS views read these lists from
js/views/options.js, generated from this module by `python -m mistudio_jupyter.core.options js/views/options.js`
and checked in (the widgets and the sidebar build from it without Python); tests/unit/test_options.py fails
when it no longer matches.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InvalidArgument

QUANTIZATIONS = ("none", "bnb-8bit", "bnb-4bit")
DTYPES = ("auto", "float32", "float16", "bfloat16")
STATUSES = ("pending", "downloading", "ready", "cancelled", "failed", "interrupted")
ACTIVE_STATUSES = ("pending", "downloading")
RESUMABLE_STATUSES = ("cancelled", "failed", "interrupted")
SORTABLE = ("name", "repo_id", "status", "family", "params", "size_bytes", "created_at", "updated_at")


@dataclasses.dataclass(frozen=True)
class LoadChoice:
    """How a model is loaded: bitsandbytes quantization, the dtype of the rest, nested quantization of absmax."""

    quantization: str = "none"
    dtype: str = "auto"
    double_quant: bool = False


@dataclasses.dataclass(frozen=True)
class LoadOption:
    """A load option as the memory table names it, and the choice it stands for."""

    name: str
    label: str
    choice: LoadChoice

    @property
    def on_entry(self) -> bool:
        """Whether a catalog entry can record it (double quant is chosen when loading)."""
        return not self.choice.double_quant


LOAD_OPTIONS = (
    LoadOption("fp32", "fp32", LoadChoice("none", "float32")),
    LoadOption("fp16", "fp16", LoadChoice("none", "float16")),
    LoadOption("bf16", "bf16", LoadChoice("none", "bfloat16")),
    LoadOption("bnb-8bit", "8-bit (bnb)", LoadChoice("bnb-8bit")),
    LoadOption("bnb-4bit", "4-bit (bnb)", LoadChoice("bnb-4bit")),
    LoadOption("bnb-4bit-dq", "4-bit, double quant (bnb)", LoadChoice("bnb-4bit", double_quant=True)),
)
OPTION_NAMES = tuple(option.name for option in LOAD_OPTIONS)
_BY_NAME = {option.name: option for option in LOAD_OPTIONS}


def validate_choice(field: str, value: object, allowed: Sequence[str]) -> str:
    """`value` if it is one of `allowed`, else InvalidArgument naming the choices."""
    if value not in allowed:
        raise InvalidArgument(f"unknown {field} {value!r}; expected one of: {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def load_choice(
    option: str | None = None,
    quantization: str | None = None,
    dtype: str | None = None,
    *,
    default: LoadChoice = LoadChoice(),
) -> LoadChoice:
    """The choice `option` names, else the `quantization`/`dtype` pair (each `default`'s when None).

    An option with a quantization or dtype that means something else is InvalidArgument.
    """
    if option is None:
        return LoadChoice(
            validate_choice("quantization", quantization or default.quantization, QUANTIZATIONS),
            validate_choice("dtype", dtype or default.dtype, DTYPES),
            default.double_quant,
        )
    choice = _BY_NAME[validate_choice("option", option, OPTION_NAMES)].choice
    for field, given in (("quantization", quantization), ("dtype", dtype)):
        if given is not None and given != getattr(choice, field):
            raise InvalidArgument(
                f"option {option!r} loads with {field} {getattr(choice, field)!r}, not {given!r}; give the option alone"
            )
    return choice


def entry_choice(option: str | None = None, quantization: str | None = None, dtype: str | None = None) -> LoadChoice:
    """`load_choice` for a catalog entry, which records quantization and dtype only."""
    choice = load_choice(option, quantization, dtype)
    if choice.double_quant:
        raise InvalidArgument(
            f"{option} is chosen when loading: add or download with option 'bnb-4bit', then load with option {option!r}"
        )
    return choice


def javascript_module() -> str:
    """js/views/options.js: these lists as ES module exports for the views."""
    exports: dict[str, Any] = {
        "STATUSES": STATUSES,
        "ACTIVE_STATUSES": ACTIVE_STATUSES,
        "RESUMABLE_STATUSES": RESUMABLE_STATUSES,
        "QUANTIZATIONS": QUANTIZATIONS,
        "LOAD_OPTIONS": [
            {"name": option.name, "label": option.label, "on_entry": option.on_entry} for option in LOAD_OPTIONS
        ],
    }
    header = (
        "// Generated from mistudio_jupyter/core/options.py by "
        "`python -m mistudio_jupyter.core.options js/views/options.js`: do not edit."
    )
    return (
        "\n".join([header, *(f"export const {name} = {json.dumps(value)};" for name, value in exports.items())]) + "\n"
    )


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(javascript_module(), encoding="utf-8")
