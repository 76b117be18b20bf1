"""`make team-demo` (scripts/team_demo.py) run headless: it prints the Hub's URL and the logins, the users
sign in through the Hub's REST API, reach the store and start their own server, and Ctrl-C stops all of it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests import postgres
from tests.hubserver import default_root
from tests.polling import wait_for
from tests.ports import free_port
from tests.prerequisites import missing

from .conftest import API, REPO, _check_prerequisites

LAST_LINE = "Ctrl-C stops everything."


class Demo:
    """The running demo script and what it printed."""

    def __init__(self, process: subprocess.Popen[str], printed: str) -> None:
        self.process = process
        self.url = _field(printed, r"JupyterHub: (\S+)")
        self.passwords = dict(re.findall(r"login (\S+) password (\S+)", printed))
        self.postgres_dir = _field(printed, r"Catalog: \S+\?host=([^&\s]+)")

    def token(self, user: str) -> str:
        body = {"auth": {"username": user, "password": self.passwords[user]}}
        status, answer = self.call("POST", f"/hub/api/users/{user}/tokens", None, body)
        assert status == 201, answer
        return str(answer["token"])

    def call(self, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", **({"Authorization": f"token {token}"} if token else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def processes(self) -> list[psutil.Process]:
        """The script, everything it started, and the PostgreSQL server (which runs detached)."""
        script = psutil.Process(self.process.pid)
        server = [p for p in psutil.process_iter(["cmdline"]) if self.postgres_dir in " ".join(p.info["cmdline"] or [])]
        return [script, *script.children(recursive=True), *server]


def _field(printed: str, pattern: str) -> str:
    found = re.search(pattern, printed)
    assert found is not None, f"{pattern!r} not in the demo's output:\n{printed}"
    return found[1]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    _check_prerequisites()
    if postgres.missing_reason():
        missing(postgres.missing_reason() or "")
    command = [sys.executable, "-m", "scripts.team_demo", "--port", str(free_port()), "--root", str(tmp_path)]
    process = subprocess.Popen(
        [*command, "--hub-root", str(default_root())],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.strip() == LAST_LINE:
                break
        assert lines and lines[-1].strip() == LAST_LINE, "".join(lines)
        yield Demo(process, "".join(lines))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _server_answers(demo: Demo, user: str, token: str) -> bool:
    return demo.call("GET", f"/user/{user}/api/status", token)[0] == 200


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_team_demo_serves_its_users_and_stops_cleanly(demo: Demo) -> None:
    assert set(demo.passwords) == {"alice", "bob"}
    alice, bob = demo.token("alice"), demo.token("bob")
    status, system = demo.call("GET", API + "/system", alice)
    assert status == 200 and system
    assert demo.call("GET", API + "/models", bob) == (200, {"models": []})
    status, refused = demo.call("POST", API + "/models", bob, {"repo_id": "tiny/gpt2"})
    assert status == 403 and refused["error"]["code"] == "forbidden"
    assert demo.call("POST", "/hub/api/users/bob/server", bob)[0] in (201, 202)
    wait_for(lambda: _server_answers(demo, "bob", bob), 120, 0.5, "bob's server")
    running = demo.processes()
    assert any("jupyterhub.singleuser" in " ".join(p.cmdline()) for p in running)

    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=120) == 0

    left = [process for process in running if not _gone(process)]
    assert not left, [" ".join(process.cmdline()) for process in left]
    assert not Path(demo.postgres_dir).exists()
