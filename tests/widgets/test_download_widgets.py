"""DownloadProgress and DownloadForm against the real ModelManager and the test Hub."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.widgets import DownloadForm, DownloadProgress
from mistudio_jupyter.widgets._base import POLL_S, watcher_for
from tests.polling import wait_for

from .conftest import Comm, send

TOKEN = "hf_test_good"


def test_progress_follows_a_download_to_ready(manager, hub, widgets):
    hub.faults.set(path="model.safetensors", throttle_bps=150_000)  # ~4 s for tiny/gpt2
    handle = manager.download("tiny/gpt2")
    progress = DownloadProgress(handle.model_id, manager=manager)
    widgets.append(progress)
    comm = Comm(progress)
    wait_for(lambda: progress.record["status"] == "ready", timeout=60, what="ready")

    sent = comm.updates("record")
    fractions = [record["progress"] for record in sent]
    assert len({f for f in fractions if 0 < f < 1}) >= 3, "the bar moved in steps while downloading"
    assert fractions == sorted(fractions) and sent[-1]["status"] == "ready"
    delays = [
        at - datetime.fromisoformat(data["state"]["record"]["updated_at"]).timestamp()
        for at, data in comm.messages
        if "record" in data.get("state", {})
    ]
    assert max(delays) < 20 * POLL_S, "each catalog change reached the view (how soon: a benchmark's question)"


def test_a_catalog_changing_fifty_times_a_second_reaches_the_view_at_most_twice_a_second(manager, widgets):
    record = manager.add("tiny/gpt2")
    progress = DownloadProgress(record.id, manager=manager)
    widgets.append(progress)
    comm = Comm(progress)
    total = 150
    for done in range(1, total + 1):
        manager.catalog.update(record.id, status="downloading", bytes_done=done, bytes_total=total)
        time.sleep(0.02)
    wait_for(lambda: progress.record["bytes_done"] == total, timeout=30, what="the last change")

    sent = [at for at, data in comm.messages if "record" in data.get("state", {})]
    assert len(sent) >= 3, "the view followed the changes, not only the last one"
    # The watcher sleeps half a second after each message it sends, so load can only widen these gaps
    # (the 1% spares wall-clock slew).
    gaps = [later - earlier for earlier, later in zip(sent, sent[1:])]
    assert min(gaps) >= 0.495, gaps


def test_a_download_started_elsewhere_shows_in_an_open_widget(manager, settings, hub, widgets):
    record = manager.add("tiny/pythia")
    progress = DownloadProgress(record.id, manager=manager)
    widgets.append(progress)
    assert progress.record["status"] == "pending"
    elsewhere = ModelManager(settings)  # another front end (the CLI, the server) on the same catalog
    try:
        elsewhere.download(record.id).wait(timeout=30)
    finally:
        elsewhere.close()
    wait_for(lambda: progress.record["status"] == "ready", timeout=30, what="the widget to see it")


def test_cancel_and_resume_from_the_view(manager, hub, widgets):
    hub.faults.set(path="model.safetensors", throttle_bps=50_000)
    handle = manager.download("tiny/gpt2")
    progress = DownloadProgress(handle.model_id, manager=manager)
    widgets.append(progress)
    wait_for(lambda: progress.record["bytes_done"] > 0, what="some bytes")
    send(progress, action="cancel", id=handle.model_id)
    wait_for(lambda: progress.record["status"] == "cancelled", what="cancelled")
    kept = progress.record["bytes_done"]
    assert kept > 0 and progress.error is None
    hub.faults.reset()
    send(progress, action="resume", id=handle.model_id)
    wait_for(lambda: progress.record["status"] == "ready", timeout=30, what="ready after resume")
    assert progress.error is None


def test_the_watcher_stops_when_the_last_widget_closes(manager, widgets):
    record = manager.add("tiny/gpt2")
    first = DownloadProgress(record.id, manager=manager)
    second = DownloadProgress(record.id, manager=manager)
    watcher = watcher_for(manager)
    assert watcher.running
    first.close()
    time.sleep(2 * POLL_S)
    assert watcher.running, "one poll serves the widgets still open"
    comm = Comm(second)
    second.close()
    wait_for(lambda: not watcher.running, timeout=20, what="the watcher thread to end")
    wait_for(lambda: not manager.changes.running, timeout=20, what="the poller thread to end")
    manager.catalog.update(record.id, status="downloading", bytes_done=10, bytes_total=100)
    time.sleep(3 * POLL_S)
    assert comm.updates("record") == [] and second.record["status"] == "pending"


def test_one_catalog_poller_serves_every_download_and_widget_of_the_process(manager, hub, widgets):
    hub.faults.set(path="/cdn/", throttle_bps=100_000)
    before = set(threading.enumerate())  # an earlier test's manager may still be watching its worker
    handles = [manager.download(repo) for repo in ("tiny/gpt2", "tiny/llama")]
    widgets.extend(DownloadProgress(handle.model_id, manager=manager) for handle in handles)
    wait_for(lambda: all(widget.record["status"] == "downloading" for widget in widgets), what="both downloading")

    names = [thread.name for thread in set(threading.enumerate()) - before]
    pollers = [name for name in names if name.startswith(("mistudio-catalog", "mistudio-download-"))]
    assert pollers == ["mistudio-catalog-poller"]
    hub.faults.reset()
    assert all(handle.wait(30).status == "ready" for handle in handles)


def test_form_preview_echoes_the_request(manager, widgets):
    form = DownloadForm(manager=manager)
    widgets.append(form)
    send(form, action="preview", repo_id="tiny/llama", revision="main")
    preview = wait_for(lambda: form.preview, what="a preview")
    assert (preview["repo_id"], preview["revision"]) == ("tiny/llama", "main")
    assert preview["family"] == "llama" and preview["memory"] and form.error is None


def test_form_errors_are_set_and_cleared(manager, widgets):
    form = DownloadForm(manager=manager)
    widgets.append(form)
    send(form, action="preview", repo_id="not a repo", revision="main")
    assert wait_for(lambda: form.error, what="an error")["code"] == "invalid_repo_id"
    send(form, action="preview", repo_id="tiny/nope", revision="main")
    wait_for(lambda: form.error and form.error["code"] == "repo_not_found", what="repo_not_found")
    send(form, action="preview", repo_id="tiny/gpt2", revision="main")
    wait_for(lambda: form.preview and form.preview["repo_id"] == "tiny/gpt2", what="the preview")
    assert form.error is None
    send(form, action="explode")
    assert wait_for(lambda: form.error, what="an error")["code"] == "invalid_argument"
    send(form, action="preview", repository="tiny/gpt2")
    wait_for(lambda: form.error and "preview" in form.error["message"], what="a bad message error")


def test_form_download_uses_the_token_once_and_never_shows_it(manager, widgets):
    form = DownloadForm(manager=manager)
    widgets.append(form)
    comm = Comm(form)
    send(form, action="download", repo_id="tiny/gated", revision="main", quantization="none", dtype="auto", token=TOKEN)
    wait_for(lambda: form.record and form.record["status"] == "ready", timeout=30, what="the gated download")
    assert form.error is None
    state = json.dumps(form.get_state(), default=str) + json.dumps([data for _, data in comm.messages], default=str)
    assert TOKEN not in state
    assert TOKEN not in json.dumps([record.to_dict() for record in manager.list()])
    assert not any(TOKEN in repr(value) for value in vars(form).values())


def test_form_download_takes_the_option_the_memory_table_names(manager, widgets):
    form = DownloadForm(manager=manager)
    widgets.append(form)
    send(form, action="download", repo_id="tiny/gpt2", revision="main", option="fp16", token=None)
    wait_for(lambda: form.record, what="the download")
    assert (form.record["quantization"], form.record["dtype"]) == ("none", "float16")


def test_form_download_without_a_token_of_a_gated_repo_fails_clearly(manager, widgets):
    form = DownloadForm(manager=manager)
    widgets.append(form)
    send(
        form,
        action="download",
        repo_id="tiny/gated",
        revision="main",
        quantization="bnb-4bit",
        dtype="auto",
        token=None,
    )
    assert wait_for(lambda: form.error, what="the failure")["code"] == "gated_login_required"
    assert form.record is None and manager.list() == []


def test_form_download_of_a_typo_adds_nothing(manager, widgets):
    form = DownloadForm(manager=manager)
    widgets.append(form)
    send(form, action="download", repo_id="tiny/gtp2", revision="main", quantization="none", dtype="auto", token=None)
    assert wait_for(lambda: form.error, what="the failure")["code"] == "repo_not_found"
    assert form.record is None and manager.list() == []
