"""core.units.format_bytes prints every size of tests/format_bytes.json as the table says, as formatBytes
in js/views/util.js does (js/tests/util.test.js reads the same table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_jupyter.core.units import format_bytes

CASES = json.loads((Path(__file__).parents[1] / "format_bytes.json").read_text())["cases"]


@pytest.mark.parametrize(("value", "text"), CASES)
def test_format_bytes(value: float | None, text: str) -> None:
    assert format_bytes(value) == text
