"""Odd input refused before anything happens, with the one right answer, in every front end: revisions
git would not accept, tokens no HTTP header can carry, control characters in queries; and the server's
own limits: one worker per burst of download requests, JSON errors on every route and handshake, a cap
on subscriptions, private worker logs."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mistudio_jupyter import cli
from mistudio_jupyter.core.downloads.cache import RepoCache
from mistudio_jupyter.core.downloads.manager import log_dir
from mistudio_jupyter.core.errors import DownloadFailed, InvalidArgument
from mistudio_jupyter.core.hub import validate_revision
from mistudio_jupyter.core.jobs import WORKER_MODULE
from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.server.events import MAX_SUBSCRIPTIONS
from tests.polling import wait_for
from tests.reliability.live import API, JupyterServer

from .conftest import assert_refusal, state

REPO = "tiny/gpt2"
BAD_REVISIONS = [
    ".",
    "..",
    "main/.",
    "a/./b",
    "a/../b",
    "a//b",
    "main/",
    "a\\b",
    "ma\x01in",
    "ma in",
    "@{-1}",
    "@",
    "-main",
    "refs/heads/.hidden",
    "topic.lock",
    "/main",
    "main.",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "x" * 256,
]
GOOD_REVISIONS = ["main", "v1.0", "refs/pr/1", "release/2024-01", "0" * 40]
BAD_TOKENS = ["hf_\u00e9\u202e", "hf_abc\r\nX-Injected: 1", "hf_abc def", "hf_\x00", "hf_abc\t"]


def run_cli(live: JupyterServer, monkeypatch: pytest.MonkeyPatch, *words: str) -> tuple[int, str, str]:
    monkeypatch.setenv("MISTUDIO_DB_URL", live.db_url)
    monkeypatch.setenv("MISTUDIO_CACHE_DIR", str(live.cache))
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(words), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def hub_requests(hub: Any) -> list[str]:
    return [record.path for record in hub.log]


# --- revisions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", BAD_REVISIONS)
def test_python_refuses_revisions_git_would_not_accept_before_any_hub_request(
    manager: Any, hub: Any, revision: str
) -> None:
    for call in (manager.add, manager.download, manager.preview, manager.architecture):
        with pytest.raises(InvalidArgument, match="not a valid revision"):
            call(REPO, revision=revision)
    assert manager.list() == [] and hub_requests(hub) == []


@pytest.mark.parametrize("revision", GOOD_REVISIONS)
def test_revisions_git_accepts_are_accepted(revision: str) -> None:
    assert validate_revision(revision) == revision


def test_rest_and_cli_refuse_each_bad_revision(live: JupyterServer, hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    before = state(live)
    for revision in BAD_REVISIONS:
        for path in ("/models", "/models/preview"):
            status, payload = live.request("POST", path, {"repo_id": REPO, "revision": revision})
            assert_refusal(status, payload)
            assert (status, payload["error"]["code"]) == (400, "invalid_argument"), (revision, payload)
        if "\x01" not in revision:  # argv cannot hold every byte; the REST case covers it
            code, out, err = run_cli(live, monkeypatch, "add", REPO, f"--revision={revision}", "--json")
            assert code == 1 and out == "", (revision, err)
            assert json.loads(err)["error"]["code"] == "invalid_argument"
    assert state(live) == before and hub_requests(hub) == []


def test_write_ref_refuses_to_leave_refs_and_cleans_up_after_a_failed_write(settings: Any) -> None:
    repo = RepoCache(settings.cache_dir, REPO)
    for revision in (".", "..", "../../x", "a//b"):
        with pytest.raises(DownloadFailed, match="refs folder"):
            repo.write_ref(revision, "0" * 40)
    assert not repo.root.exists()

    (repo.root / "refs" / "main").mkdir(parents=True)  # something in the way: the rename fails
    with pytest.raises(DownloadFailed) as failure:
        repo.write_ref("main", "1" * 40)
    assert str(settings.cache_dir) not in failure.value.message
    assert sorted(path.name for path in (repo.root / "refs").iterdir()) == ["main"]


# --- tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_python_refuses_tokens_no_header_can_carry(manager: Any, hub: Any, token: str) -> None:
    with pytest.raises(InvalidArgument, match="printable ASCII") as failure:
        manager.preview(REPO, token=token)
    assert token not in failure.value.message
    with pytest.raises(InvalidArgument, match="printable ASCII"):
        manager.download(REPO, token=token)
    assert manager.list() == [] and hub_requests(hub) == []


def test_a_bad_hf_token_in_the_environment_is_refused_by_name(settings: Any, hub: Any) -> None:
    manager = ModelManager(dataclasses.replace(settings, token="hf_\u00e9"))
    with pytest.raises(InvalidArgument, match="HF_TOKEN is not a Hugging Face token"):
        manager.preview(REPO)
    assert hub_requests(hub) == []


def test_rest_and_cli_refuse_bad_tokens(live: JupyterServer, hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model_id = live.create(REPO)["id"]
    hub.clear_log()
    before = state(live)
    for token in BAD_TOKENS:
        for method, path, body in (
            ("POST", "/models/preview", {"repo_id": REPO, "token": token}),
            ("POST", f"/models/{model_id}/download", {"token": token}),
            ("POST", f"/models/{model_id}/resume", {"token": token}),
        ):
            status, payload = live.request(method, path, body)
            assert_refusal(status, payload)
            assert (status, payload["error"]["code"]) == (400, "invalid_argument"), (path, payload)
            assert token not in json.dumps(payload)
        if "\x00" not in token:  # an environment variable cannot hold NUL
            monkeypatch.setenv("MISTUDIO_TEST_TOKEN", token)
            code, out, err = run_cli(live, monkeypatch, "preview", REPO, "--token-env", "MISTUDIO_TEST_TOKEN")
            assert code == 1 and "printable ASCII" in err and "Traceback" not in err + out
    assert state(live) == before and hub_requests(hub) == []


# --- one worker per burst -------------------------------------------------------------------------


def worker_processes(server_pid: int) -> set[int]:
    """The download workers the server started (a worker may learn its job from its request only)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if WORKER_MODULE.encode() in cmdline and parent == server_pid:
                pids.add(int(entry.name))
    return pids


def test_a_burst_of_download_requests_starts_one_worker(live: JupyterServer, hub: Any) -> None:
    hub.faults.set(path="/cdn/", throttle_bps=2_000_000)
    model_id = live.create(REPO)["id"]
    assert live.process is not None
    server_pid = live.process.pid
    seen: set[int] = set()
    done = threading.Event()

    def sample() -> None:  # abandoned children live for a Python start-up (tens of ms): sampling sees them
        while not done.is_set():
            seen.update(worker_processes(server_pid))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda _: live.request("POST", f"/models/{model_id}/download", {}), range(50)))
        time.sleep(0.5)
    finally:
        done.set()
        sampler.join()
    live.request("POST", f"/models/{model_id}/cancel", {})
    assert {status for status, _ in answers} == {202}
    assert len(seen) == 1, f"{len(seen)} worker processes started for one entry"


# --- JSON errors, limits ---------------------------------------------------------------------------


def raw_exchange(live: JupyterServer, request: str) -> tuple[int, str, Any]:
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as connection:
        connection.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:]}
    return int(lines[0].split()[1]), headers.get("content-type", ""), json.loads(body) if body else None


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def handshake(path: str, *, token: str | None, key: bool = True, upgrade: bool = True) -> str:
    lines = [f"GET {API}{path} HTTP/1.1", "Host: 127.0.0.1"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"]
    if key:
        lines.append("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
    if token:
        lines.append(f"Authorization: token {token}")
    return "\r\n".join(lines) + "\r\n\r\n"


@pytest.mark.parametrize(
    "what, request_text, status",
    [
        ("no credentials", handshake("/events", token=None), 403),
        ("no upgrade", handshake("/events", token="e2e-test-token", upgrade=False), 400),
        ("no key", handshake("/events", token="e2e-test-token", key=False), 400),
        ("an unknown route", handshake("/nothing-here", token="e2e-test-token", upgrade=False), 404),
    ],
)
def test_every_refused_handshake_and_unknown_route_answers_json(
    live: JupyterServer, what: str, request_text: str, status: int
) -> None:
    answered, content_type, payload = raw_exchange(live, request_text)
    assert answered == status, what
    assert content_type.startswith("application/json"), (what, content_type)
    assert_refusal(answered, payload)


@pytest.mark.parametrize("query", ["q=a%00b", "q=a%0Ab", "family=gpt2%0D", "q=%7F", "q%00=1"])
def test_control_characters_in_queries_are_refused(live: JupyterServer, query: str) -> None:
    status, payload = live.request("GET", f"/models?{query}")
    assert_refusal(status, payload)
    assert (status, payload["error"]["code"]) == (400, "invalid_argument")


def test_subscriptions_per_socket_are_capped(live: JupyterServer) -> None:
    client = live.ws()
    try:
        for index in range(MAX_SUBSCRIPTIONS + 1):
            client.send({"action": "subscribe", "channel": f"model/{index:08d}"})
        wait_for(lambda: len(client.messages) == MAX_SUBSCRIPTIONS + 1, 30, what="an answer to every subscription")
        client.send({"action": "subscribe", "channel": "model/00000000"})
        wait_for(lambda: len(client.messages) == MAX_SUBSCRIPTIONS + 2, 10, what="the answer to a repeated one")
    finally:
        client.close()
    events = [message["event"] for message in client.messages]
    assert events == ["subscribed"] * MAX_SUBSCRIPTIONS + ["error", "subscribed"], "a repeated channel is not new"
    assert client.messages[MAX_SUBSCRIPTIONS]["data"]["code"] == "too_many_subscriptions"


# --- worker logs ----------------------------------------------------------------------------------


def test_worker_logs_are_private_and_in_the_runtime_dir(manager: Any, settings: Any) -> None:
    manager.download(REPO).wait(60)
    folder = log_dir(settings)
    assert folder == settings.runtime_dir / "mistudio" / "downloads"
    assert folder.stat().st_mode & 0o777 == 0o700
    logs = list(folder.glob("*.log"))  # the job's, and the one a worker started ahead of its job writes first
    assert folder / f"{manager.list()[0].id}.log" in logs
    assert {path.stat().st_mode & 0o777 for path in logs} == {0o600}


def test_a_log_folder_planted_as_a_link_is_refused(manager: Any, settings: Any, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (settings.runtime_dir / "mistudio").mkdir(parents=True)
    os.symlink(elsewhere, settings.runtime_dir / "mistudio" / "downloads")
    with pytest.raises(DownloadFailed, match="link or belongs to another user"):
        manager.download(REPO)
    assert list(elsewhere.iterdir()) == []


def test_a_shared_log_folder_is_made_private(settings: Any) -> None:
    folder = settings.runtime_dir / "mistudio" / "downloads"
    folder.mkdir(parents=True, mode=0o755)
    folder.chmod(0o755)
    assert log_dir(settings).stat().st_mode & 0o777 == 0o700
