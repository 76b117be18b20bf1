"""ArchitectureViewer and ModelsPanel against the real ModelManager and the test Hub."""

from __future__ import annotations

import pytest
import traitlets

from mistudio_jupyter.core.anatomy.hooks import HookPoint
from mistudio_jupyter.core.errors import RepoNotFound
from mistudio_jupyter.widgets import ArchitectureViewer, ModelsPanel
from tests.polling import wait_for

from .conftest import Comm, send, set_from_view

PICKED = ["blocks.0.hook_resid_pre", "blocks.1.hook_attn_out", "blocks.1.hook_resid_post"]


def test_viewer_shows_a_repo_and_its_selection_is_live_in_the_kernel(manager, widgets):
    viewer = ArchitectureViewer("tiny/gpt2", manager=manager)
    widgets.append(viewer)
    assert viewer.architecture["summary"]["num_layers"] == 2
    assert all(isinstance(hook, HookPoint) for hook in viewer.hooks)
    state = viewer.get_state()
    assert state["hooks"][0] == viewer.hooks[0].to_dict() and state["selected"] == []

    set_from_view(viewer, selected=list(reversed(PICKED)))
    assert viewer.selected == PICKED, "network order"
    assert [hook.name for hook in viewer.selected_hooks] == PICKED
    with pytest.raises(traitlets.TraitError, match="hook_nope"):
        viewer.selected = ["blocks.0.hook_nope"]


def test_viewer_estimates_memory_and_again_for_the_context_the_view_asks(manager, widgets):
    viewer = ArchitectureViewer("tiny/gpt2", manager=manager)
    widgets.append(viewer)
    first = viewer.estimate
    assert set(first["memory"]) >= {"fp32", "fp16", "bnb-4bit"} and first["fit"]["fp32"]["verdict"] in {"gpu", "cpu"}
    assert first["memory"]["fp32"]["kv_cache_bytes"] == 0

    send(viewer, action="estimate", context=1024, batch=2)
    wait_for(lambda: viewer.estimate is not first, what="the new estimate")
    assert viewer.estimate["memory"]["fp32"]["kv_cache_bytes"] > 0 and viewer.error is None
    send(viewer, action="estimate", context=-1, batch=1)
    assert "context" in wait_for(lambda: viewer.error, what="an error")["message"]


def test_viewer_selection_set_in_the_kernel_reaches_the_view(manager, widgets):
    viewer = ArchitectureViewer("tiny/llama", manager=manager)
    widgets.append(viewer)
    comm = Comm(viewer)
    viewer.selected = ["blocks.0.hook_resid_post"]
    assert comm.updates("selected") == [["blocks.0.hook_resid_post"]]


def test_viewer_of_an_unknown_repo_raises(manager):
    with pytest.raises(RepoNotFound):
        ArchitectureViewer("tiny/nope", manager=manager)


def test_panel_lists_models_live_and_opens_an_architecture(manager, widgets):
    ready = manager.download("tiny/gpt2").wait(timeout=30)
    panel = ModelsPanel(manager=manager)
    widgets.append(panel)
    assert [model["id"] for model in panel.models] == [ready.id]
    assert wait_for(lambda: panel.can, what="the permissions") == ["read", "download", "delete", "admin"]
    added = manager.add("tiny/pythia")  # from elsewhere: the panel sees it on its next poll
    wait_for(lambda: len(panel.models) == 2, timeout=30, what="the new entry")

    send(panel, action="architecture", id=ready.id)
    wait_for(lambda: panel.hooks, what="the hooks")
    assert panel.architecture["summary"]["num_layers"] == 2 and panel.error is None
    assert panel.estimate["memory"]["fp16"]["total_bytes"] > 0
    panel.selected = PICKED
    comm = Comm(panel)
    send(panel, action="architecture", id=added.id)
    wait_for(lambda: panel.hooks and panel.hooks[0].module.startswith("gpt_neox"), what="the other model's hooks")
    first = next(data["state"] for _, data in comm.messages if "architecture" in data.get("state", {}))
    assert first == {"architecture": None, "hooks": [], "selected": [], "estimate": None}, (
        "cleared at once, in one message"
    )
    assert panel.selected == []

    set_from_view(panel, filters={**panel.filters, "family": "gpt2"})
    assert panel.filters["family"] == "gpt2"

    send(panel, action="delete", id=added.id)
    wait_for(lambda: [model["id"] for model in panel.models] == [ready.id], timeout=30, what="the deletion")
    send(panel, action="delete", id="no-such-id")
    assert wait_for(lambda: panel.error, what="an error")["code"] == "not_found"


def test_every_widget_displays_as_its_own_model(manager, widgets):
    record = manager.add("tiny/gpt2")
    from mistudio_jupyter.widgets import DownloadForm, DownloadProgress

    for widget in (
        ModelsPanel(manager=manager),
        DownloadForm(manager=manager),
        DownloadProgress(record.id, manager=manager),
        ArchitectureViewer(manager=manager),
    ):
        widgets.append(widget)
        bundle = widget._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == widget.comm.comm_id
        assert widget.get_state()["_esm"].startswith(("import", "var", "function", "const", "let", "//", "/*"))
