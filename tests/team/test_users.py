"""Users go through the store: each user's ModelManager, CLI and Jupyter server, configured with the
store's URL and the user's Hub token, list, download and delete through it and load from its cache."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mistudio_jupyter import capture, release
from mistudio_jupyter.core.errors import Cancelled, Conflict, Forbidden
from mistudio_jupyter.core.leases import process_description
from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from mistudio_jupyter.widgets import ModelsPanel
from tests.hubserver import HubServer
from tests.polling import wait_for
from tests.ports import free_port
from tests.widgets.conftest import send

from .conftest import SERVICE, TeamHub

WEIGHTS = "model.safetensors"


def user_environment(team_hub: TeamHub, user: str, home: Path) -> dict[str, str]:
    """What the Hub gives a user's server and kernels: the store's URL, the user's token, the shared cache."""
    return {
        "MISTUDIO_STORE_URL": f"{team_hub.url}/services/{SERVICE}/",
        "MISTUDIO_STORE_TOKEN": team_hub.tokens[user],
        "MISTUDIO_CACHE_DIR": str(team_hub.cache_dir),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }


@pytest.fixture(scope="module")
def managers(team_hub: TeamHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModelManager]]:
    """Each user's ModelManager in store mode."""
    opened = {
        user: ModelManager(Settings.from_env(user_environment(team_hub, user, tmp_path_factory.mktemp(user))))
        for user in ("alice", "bob", "carol")
    }
    yield opened
    for manager in opened.values():
        manager.close()


def test_a_user_downloads_through_the_store_and_others_see_it_ready(managers: dict[str, ModelManager]) -> None:
    bob, carol = managers["bob"], managers["carol"]
    assert bob.remote and not (bob.settings.cache_dir / "models--tiny--qwen2").exists()
    seen: list[str] = []
    handle = bob.download("tiny/qwen2", on_progress=lambda record: seen.append(record.status))
    record = handle.wait(timeout=120)
    assert record.status == "ready" and record.requested_by == "bob" and seen[-1] == "ready"
    assert Path(record.file_path or "", "config.json").is_file()  # in the shared cache, as mounted here
    listed = {entry.repo_id: entry for entry in carol.list()}
    assert listed["tiny/qwen2"].status == "ready" and listed["tiny/qwen2"].requested_by == "bob"
    assert carol.resolve("tiny/qwen2").id == record.id
    audit = [(entry["user"], entry["action"], entry["repo_id"]) for entry in managers["alice"].audit()]
    assert ("bob", "download", "tiny/qwen2") in audit


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `root` with its size, modification time and mode."""
    infos = {path: path.lstat() for path in root.rglob("*")}
    return {str(path): (info.st_size, info.st_mtime_ns, info.st_mode) for path, info in infos.items()}


def test_a_reader_loads_from_the_read_only_cache_offline_and_captures(
    managers: dict[str, ModelManager], _hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    carol = managers["carol"]
    record = carol.resolve("tiny/qwen2")
    assert record is not None and record.status == "ready"
    # As a user's pod sets it; huggingface_hub reads the variable once, at import, so its constant is
    # switched too (and back after the test, which the variable alone would not do).
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    before = _tree(carol.settings.cache_dir)
    _hub_server.clear_log()
    snapshot_root = Path(record.file_path or "").parents[1]
    modes = {path: path.stat().st_mode for path in [snapshot_root, *snapshot_root.rglob("*")] if not path.is_symlink()}
    for path in modes:  # read-only to this process (binding for any user but root; the tree check holds for all)
        path.chmod(modes[path] & ~0o222)
    try:
        model, tokenizer = carol.load(record.id, option="fp32", device_map=None)
        hook = "blocks.1.hook_resid_post"
        assert hook in {point.name for point in carol.hook_points(record.id)}
        with capture(model, [hook]) as acts:
            model(**tokenizer("The capital of France is", return_tensors="pt"))
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert acts[hook].shape[0] == 1 and acts[hook].shape[-1] == model.config.hidden_size
    assert _tree(carol.settings.cache_dir) == before, "loading wrote to the shared cache"
    assert _hub_server.log == [], "loading from the store's cache asked the Hub"

    # carol's kernel holds a lease in the store while the model lives: nobody deletes it under her
    (held,) = managers["alice"].leases.live(record.id)
    assert held.holder == f"carol@{process_description()}"
    with pytest.raises(Conflict, match=f"in use by carol@{re.escape(process_description())} since"):
        managers["alice"].delete(record.id)
    assert release(model) and managers["alice"].leases.live(record.id) == []


def test_a_reader_is_forbidden_to_download_from_the_manager(managers: dict[str, ModelManager]) -> None:
    with pytest.raises(Forbidden, match="custom:mistudio:download"):
        managers["carol"].download("tiny/gemma")
    record = managers["bob"].add("tiny/gemma")
    with pytest.raises(Forbidden, match="custom:mistudio:download"):
        managers["carol"].download(record.id)
    with pytest.raises(Forbidden, match="custom:mistudio:delete"):
        managers["bob"].delete(record.id)
    assert managers["carol"].get(record.id).status == "pending"


def test_a_reader_is_forbidden_to_download_from_the_cli(team_hub: TeamHub, tmp_path: Path) -> None:
    environment = {**os.environ, **user_environment(team_hub, "carol", tmp_path)}
    for name in ("MISTUDIO_DB_URL", "JUPYTERHUB_API_TOKEN"):
        environment.pop(name, None)

    def mistudio(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mistudio_jupyter", *argv]
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)

    for argv in (["download", "tiny/gemma"], ["download", "tiny/gemma", "--json"]):
        refused = mistudio(*argv)
        assert refused.returncode == 1, refused
        assert "custom:mistudio:download" in refused.stderr
    assert json.loads(refused.stderr)["error"]["code"] == "forbidden"
    listed = mistudio("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "tiny/qwen2" in {entry["repo_id"] for entry in json.loads(listed.stdout)}
    assert not (tmp_path / "data" / "mistudio").exists(), "the CLI opened a catalog of its own"


def _jupyter_call(url: str, token: str, method: str, path: str, body: object = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}mistudio/api/v1{path}", data=data, method=method, headers={"Authorization": f"token {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_readers_jupyterlab_goes_through_the_store_and_answers_403_forbidden(
    team_hub: TeamHub, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"mistudio_jupyter": True}}})
    )
    environment = {**os.environ, **user_environment(team_hub, "carol", tmp_path), "JUPYTER_CONFIG_DIR": str(config)}
    environment.pop("MISTUDIO_DB_URL", None)
    port, token = free_port(), secrets.token_hex(16)
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1"]
    argv += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(argv, env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: process.poll() is not None or _answers(url, token), 60, 0.25, "the Jupyter server")
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        status, listed = _jupyter_call(url, token, "GET", "/models")
        assert status == 200 and "tiny/qwen2" in {model["repo_id"] for model in listed["models"]}
        qwen = next(model for model in listed["models"] if model["repo_id"] == "tiny/qwen2")
        assert qwen["requested_by"] == "bob"
        with urllib.request.urlopen(f"{url}lab?token={token}", timeout=30) as page:
            assert '"mistudioTeam": true' in page.read().decode(), "the page does not say the catalog is a team's"
        assert _jupyter_call(url, token, "GET", "/me")[1]["can"] == ["read"]  # the sidebar offers only reading
        status, refused = _jupyter_call(url, token, "POST", "/models", {"repo_id": "tiny/gemma"})
        assert status == 403 and refused["error"]["code"] == "forbidden", refused
        assert "custom:mistudio:download" in refused["error"]["message"]
        status, refused = _jupyter_call(url, token, "POST", f"/models/{qwen['id']}/cancel", {})
        assert status == 403 and refused["error"]["code"] == "forbidden", refused
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert team_hub.tokens["carol"] not in (tmp_path / "server.log").read_text()


def _answers(url: str, token: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2):
            return True
    except OSError:
        return False


def test_two_users_asking_for_one_repo_at_once_start_one_download(
    managers: dict[str, ModelManager], _hub_server: HubServer
) -> None:
    _hub_server.clear_log()
    barrier, handles = threading.Barrier(2), {}

    def ask(user: str) -> None:
        barrier.wait()
        handles[user] = managers[user].download("tiny/phi")

    threads = [threading.Thread(target=ask, args=(user,)) for user in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    records = {user: handle.wait(timeout=120) for user, handle in handles.items()}
    assert records["alice"].id == records["bob"].id and records["alice"].status == "ready"
    weights = _hub_server.cdn_gets(WEIGHTS)
    wait_for(lambda: all(request.finished for request in _hub_server.cdn_gets(WEIGHTS)), 10, 0.1, "the transfers")
    size = (Path(records["alice"].file_path or "") / WEIGHTS).stat().st_size
    assert weights and sum(request.bytes_sent for request in _hub_server.cdn_gets(WEIGHTS)) == size


def test_a_readers_widgets_list_through_the_store_and_show_the_refusal(managers: dict[str, ModelManager]) -> None:
    panel = ModelsPanel(manager=managers["carol"])
    try:
        assert panel.team, "the views are not told that rows name who asked"
        assert wait_for(lambda: panel.can, 30, 0.1, "the permissions") == ["read"]  # the views offer only reading
        listed = wait_for(lambda: {model["repo_id"]: model for model in panel.models}, 30, 0.1, "the models")
        assert listed["tiny/qwen2"]["requested_by"] == "bob" and listed["tiny/qwen2"]["status"] == "ready"
        send(panel, action="download", repo_id="tiny/gemma", revision="main")
        error = wait_for(lambda: panel.error, 30, 0.1, "the refusal")
        assert error["code"] == "forbidden" and "custom:mistudio:download" in error["message"]
    finally:
        panel.close()


def test_the_store_itself_refuses_to_go_through_a_store(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "MISTUDIO_STORE_URL": f"http://127.0.0.1:{free_port()}/services/{SERVICE}/",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
        "JUPYTERHUB_API_TOKEN": secrets.token_hex(16),
        "JUPYTER_DATA_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "mistudio_jupyter", "store", "--json"]
    refused = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    error = json.loads(refused.stderr)["error"]
    assert error["code"] == "invalid_argument" and "unset MISTUDIO_STORE_URL" in error["message"]


def test_cancel_resume_delete_and_prune_through_the_store(
    managers: dict[str, ModelManager], _hub_server: HubServer
) -> None:
    alice = managers["alice"]
    _hub_server.faults.set(path=WEIGHTS, throttle_bps=200_000)
    try:
        handle = alice.download("tiny/big")
        wait_for(lambda: alice.get(handle.model_id).bytes_done > 0, 60, 0.1, "the first bytes")
        assert handle.cancel().status in ("downloading", "cancelled")
        with pytest.raises(Cancelled):
            handle.wait(timeout=60)
    finally:
        _hub_server.faults.reset()
    resumed = alice.resume(handle.model_id).wait(timeout=120)
    assert resumed.status == "ready" and resumed.id == handle.model_id
    assert alice.delete(resumed.id)["freed_bytes"] > 0
    assert alice.resolve("tiny/big") is None
    assert alice.prune_cache()["freed_bytes"] >= 0
    done = [(entry["user"], entry["action"]) for entry in alice.audit(limit=5)]
    assert done[:4] == [("alice", "prune"), ("alice", "delete"), ("alice", "resume"), ("alice", "cancel")]
