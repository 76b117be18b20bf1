"""`%mistudio`: the CLI's commands, shown as DataFrames, widgets and one-line errors."""

from __future__ import annotations

import os

import pandas
import pytest

from mistudio_jupyter.magics import OPEN_MIME, ModelPage, run_line
from mistudio_jupyter.shared import shared_manager
from mistudio_jupyter.widgets import ArchitectureViewer, DownloadProgress, ModelsPanel
from tests.polling import wait_for


@pytest.fixture
def shown(widgets):
    """Run a magic line; widgets it returns are closed after the test."""

    def run(line: str):
        result = run_line(line)
        if hasattr(result, "close"):
            widgets.append(result)
        return result

    return run


def test_bare_magic_is_the_models_panel(manager, shown):
    assert isinstance(shown(""), ModelsPanel)


def test_models_already_in_the_cache_show_in_the_panel_and_the_list(manager, settings, hub, shown):
    from huggingface_hub import snapshot_download

    snapshot_download("tiny/gpt2", cache_dir=settings.cache_dir)
    assert [model["repo_id"] for model in shown("").models] == ["tiny/gpt2"]
    assert list(shown("list")["repo_id"]) == ["tiny/gpt2"]


def test_magic_and_widgets_share_the_process_manager(manager, widgets):
    panel = ModelsPanel()
    widgets.append(panel)
    assert panel.manager is shared_manager() is manager


def test_download_returns_a_live_progress_widget_at_once(manager, hub, shown):
    hub.faults.set(path="model.safetensors", throttle_bps=100_000)
    progress = shown("download tiny/gpt2")
    assert isinstance(progress, DownloadProgress)
    assert progress.record["status"] in ("pending", "downloading"), "returned before the download ended"
    wait_for(lambda: progress.record["status"] == "ready", timeout=30, what="ready")
    listing = shown("list")
    assert isinstance(listing, pandas.DataFrame) and list(listing["status"]) == ["ready"]


def test_cancel_resume_and_delete(manager, hub, shown, capsys):
    hub.faults.set(path="model.safetensors", throttle_bps=50_000)
    progress = shown("download tiny/gpt2")
    model_id = progress.entry_id
    wait_for(lambda: progress.record["bytes_done"] > 0, what="some bytes")
    assert shown(f"cancel {model_id}") is None
    assert capsys.readouterr().out.startswith("tiny/gpt2: cancelled (")
    hub.faults.reset()
    resumed = shown(f"resume {model_id}")
    assert isinstance(resumed, DownloadProgress)
    wait_for(lambda: resumed.record["status"] == "ready", timeout=30, what="ready")
    assert shown(f"delete {model_id}") is None
    assert capsys.readouterr().out.startswith(f"Deleted {model_id}; freed ")


def test_errors_are_one_line(manager, shown, capsys):
    for line, message in [
        ("download not/a/repo", "not a valid"),
        ("cancel nope", "no catalog entry"),
        ("frobnicate", "invalid choice"),
        ('download "tiny', "quotation"),
    ]:
        assert shown(line) is None
        out = capsys.readouterr().out
        assert out.startswith("mistudio: error: ") and out.count("\n") == 1, out
        assert message in out, out


def test_a_trailing_comment_is_not_an_argument(manager, shown, capsys):
    table = shown("preview tiny/llama   # memory per option")  # IPython hands the magic the whole line
    assert isinstance(table, pandas.DataFrame), capsys.readouterr().out
    assert shown('hooks "tiny/gpt2#x"') is None and "not a valid" in capsys.readouterr().out  # quoted: not a comment


def test_json_returns_plain_data(manager, shown):
    assert shown("list --json") == []


def test_arch_returns_the_viewer_and_hooks_a_dataframe(manager, shown):
    viewer = shown("arch tiny/gpt2")
    assert isinstance(viewer, ArchitectureViewer) and viewer.hooks and viewer.architecture
    hooks = shown("hooks tiny/gpt2")
    assert isinstance(hooks, pandas.DataFrame) and "blocks.1.hook_resid_post" in set(hooks["name"])


def test_open_is_the_model_page_for_jupyterlab_with_the_viewer_for_other_front_ends(manager, shown):
    record = manager.download("tiny/gpt2").wait(timeout=30)
    page = shown("open tiny/gpt2")
    assert isinstance(page, ModelPage)
    bundle = page._repr_mimebundle_()
    assert {key: bundle[OPEN_MIME][key] for key in ("id", "name", "repo_id")} == {
        "id": record.id,
        "name": "tiny/gpt2",
        "repo_id": "tiny/gpt2",
    }
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == page.viewer.comm.comm_id
    assert page.viewer.estimate["memory"]["fp32"]["total_bytes"] > 0 and page.viewer.hooks
    assert shown(f"open {record.id}").record["id"] == record.id


def test_open_explains_a_model_not_in_the_catalog_and_a_missing_name(manager, shown, capsys):
    assert shown("open tiny/gpt2") is None
    assert "not in the catalog; add it with `%mistudio add tiny/gpt2`" in capsys.readouterr().out
    assert shown("open") is None
    assert "the following arguments are required: model" in capsys.readouterr().out


def test_preview_prints_facts_and_returns_the_memory_table(manager, shown, capsys):
    table = shown("preview tiny/llama")
    out = capsys.readouterr().out
    assert out.startswith("tiny/llama @ main: family llama, params ")
    assert isinstance(table, pandas.DataFrame) and {"fp16", "bnb-8bit", "bnb-4bit"} <= set(table.index)
    assert set(table["fits on"]) <= {"gpu", "cpu", "none"}


def test_load_returns_the_model(manager, shown):
    record = manager.download("tiny/gpt2").wait(timeout=30)
    model = shown(f"load {record.id}")
    assert type(model).__name__ == "GPT2LMHeadModel"


def test_a_model_the_kernel_has_loaded_is_deleted_only_with_force(manager, shown, capsys):
    model_id = manager.download("tiny/gpt2").wait(timeout=60).id
    model = shown(f"load {model_id} --device-map cpu")
    capsys.readouterr()
    assert shown(f"delete {model_id}") is None
    out = capsys.readouterr().out
    assert out.startswith("mistudio: error: tiny/gpt2 is in use by ") and f"pid {os.getpid()} " in out, out
    assert shown(f"delete {model_id} --force") is None
    assert capsys.readouterr().out.startswith(f"Deleted {model_id}; freed ")
    del model
