"""The README's walkthrough, as written, runs in a kernel against `make demo`'s Hub."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
# What a person does by clicking in the hook picker, where the walkthrough says "click hooks to select them".
CLICK = 'viewer.selected = ["blocks.12.hook_resid_post"]'


def walkthrough() -> str:
    """The first Python block under `## Walkthrough` in README.md."""
    section = ROOT.joinpath("README.md").read_text().split("## Walkthrough", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no python block under ## Walkthrough"
    return match.group(1)


def with_click(code: str) -> str:
    lines = code.splitlines()
    viewer = next(i for i, line in enumerate(lines) if line.startswith("viewer ="))
    return "\n".join(lines[: viewer + 1] + [CLICK] + lines[viewer + 1 :])


@pytest.mark.timeout(600)
def test_readme_walkthrough_runs_against_the_demo_hub(demo_hub_url, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", demo_hub_url)
    monkeypatch.setenv("MISTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MISTUDIO_DB_URL", f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(with_click(walkthrough()))])

    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = nb.cells[0].outputs
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "mistudio: error" not in text, text
    assert "google/gemma-2-2b @ main: family gemma" in text
    assert re.search(r"torch\.Size\(\[1, \d+, 48\]\)", text), text  # [batch, position, d_model] of the tiny model
