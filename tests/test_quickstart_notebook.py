"""notebooks/quickstart.ipynb runs top to bottom in a real kernel against the test Hub, and its outputs
are what the text says they are; as it stands, it also runs against `make demo`'s Hub."""

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


def _run_quickstart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, cache_dir: Path, db_url: str, artifact: str
) -> nbformat.NotebookNode:
    """Execute the notebook in a kernel (a child process: it inherits the environment set here)."""
    monkeypatch.setenv("MISTUDIO_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("MISTUDIO_DB_URL", db_url)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "checked in clean"

    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    nbformat.write(nb, artifacts / artifact)

    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
            assert "mistudio: error" not in _text(cell), cell.source
    return nb


@pytest.mark.timeout(600)
def test_quickstart_runs_against_the_test_hub(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("MISTUDIO_QUICKSTART_REPO", "tiny/gpt2")
    nb = _run_quickstart(
        monkeypatch,
        tmp_path,
        cache_dir=settings.cache_dir,
        db_url=settings.db_url,
        artifact="quickstart.executed.ipynb",
    )

    preview = _text(_cell(nb, "%mistudio preview"))
    assert "tiny/gpt2 @ main: family gpt2" in preview and "bnb-4bit" in preview
    assert WIDGET in _cell(nb, "progress = %mistudio download").outputs[0]["data"]
    assert "('ready'," in _text(_cell(nb, "from mistudio_jupyter import shared_manager"))
    assert WIDGET in _cell(nb, "viewer = %mistudio arch").outputs[0]["data"]
    assert "['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']" in _text(_cell(nb, "layers = "))
    assert "'blocks.1.hook_resid_post': (1, " in _text(_cell(nb, "import torch"))
    assert any("image/png" in output.get("data", {}) for output in _cell(nb, "import matplotlib").outputs)
    assert "ready" in _text(_cell(nb, "%mistudio list"))


@pytest.mark.timeout(600)
def test_quickstart_as_it_stands_runs_against_the_demo_hub(demo_hub_url, monkeypatch, tmp_path):
    monkeypatch.delenv("MISTUDIO_QUICKSTART_REPO", raising=False)  # the notebook's own default repo
    monkeypatch.setenv("HF_ENDPOINT", demo_hub_url)
    nb = _run_quickstart(
        monkeypatch,
        tmp_path,
        cache_dir=tmp_path / "cache",
        db_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        artifact="quickstart.demo.ipynb",
    )

    assert "openai-community/gpt2 @ main: family gpt2" in _text(_cell(nb, "%mistudio preview"))
    assert "'blocks.11.hook_resid_post': (1, " in _text(_cell(nb, "import torch"))
    assert "failed" not in _text(_cell(nb, "%mistudio list"))
