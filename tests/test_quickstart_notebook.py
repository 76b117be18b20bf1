"""notebooks/quickstart.ipynb runs top to bottom in a real kernel against the test Hub, and its outputs
are what the text says they are."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.outputs:
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _cell(nb: nbformat.NotebookNode, source_start: str) -> nbformat.NotebookNode:
    return next(cell for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith(source_start))


@pytest.mark.timeout(600)
def test_quickstart_runs_against_the_test_hub(settings, monkeypatch, tmp_path):
    # The kernel is a child process: it inherits HF_ENDPOINT (set by conftest) and these.
    monkeypatch.setenv("MISTUDIO_QUICKSTART_REPO", "tiny/gpt2")
    monkeypatch.setenv("MISTUDIO_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setenv("MISTUDIO_DB_URL", settings.db_url)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "checked in clean"

    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    nbformat.write(nb, artifacts / "quickstart.executed.ipynb")

    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
            assert "mistudio: error" not in _text(cell), cell.source

    preview = _text(_cell(nb, "%mistudio preview"))
    assert "tiny/gpt2 @ main: family gpt2" in preview and "bnb-4bit" in preview
    assert WIDGET in _cell(nb, "progress = %mistudio download").outputs[0]["data"]
    assert "('ready'," in _text(_cell(nb, "from mistudio_jupyter.magics import shared_manager"))
    assert WIDGET in _cell(nb, "viewer = %mistudio arch").outputs[0]["data"]
    assert "['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']" in _text(_cell(nb, "layers = "))
    assert "'blocks.1.hook_resid_post': (1, " in _text(_cell(nb, "import torch"))
    assert any("image/png" in output.get("data", {}) for output in _cell(nb, "import matplotlib").outputs)
    assert "ready" in _text(_cell(nb, "%mistudio list"))
