"""Sizes as every front end shows them: decimal units (1 GB = 10^9 bytes), as the Hub and `hf cache ls` print them.

`formatBytes` in js/views/util.js follows the same rule with the same arithmetic; both are tested against
tests/format_bytes.json, so the CLI, the magics, the widgets and the sidebar print one size the same way.
"""

from __future__ import annotations

import math

BYTE_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
MISSING = "—"


def format_bytes(value: float | None) -> str:
    """141_107_412_992 -> "141 GB", 1536 -> "1.54 KB": three significant digits, rounded half up."""
    if value is None or not math.isfinite(value):
        return MISSING
    magnitude = abs(value)
    unit = _unit_of(magnitude)
    text = _rounded(magnitude / 1000**unit, unit)
    if float(text) >= 1000 and unit < len(BYTE_UNITS) - 1:  # 999.6 KB rounds up to the next unit
        unit += 1
        text = _rounded(magnitude / 1000**unit, unit)
    return f"{'-' if value < 0 else ''}{text} {BYTE_UNITS[unit]}"


def _unit_of(magnitude: float) -> int:
    unit = 0
    while magnitude >= 1000 ** (unit + 1) and unit < len(BYTE_UNITS) - 1:
        unit += 1
    return unit


def _rounded(scaled: float, unit: int) -> str:
    decimals = 0 if unit == 0 or scaled >= 100 else 1 if scaled >= 10 else 2
    rounded = math.floor(scaled * 10**decimals + 0.5) / 10**decimals
    text = f"{rounded:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
