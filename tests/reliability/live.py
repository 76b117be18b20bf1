"""Real processes for the end-to-end suites: a `jupyter server` with the extension, a test Hub in its
own process, WebSocket clients, and the cleanup of download workers (they outlive the server by
design: `start_new_session=True`).

Everything listens on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.polling import wait_for
from tests.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
API = "/mistudio/api/v1"
WORKER_MODULE = "mistudio_jupyter.core.downloads.worker"
TERMINAL = {"ready", "failed", "cancelled", "interrupted"}
# Installed server extensions that only slow the start of a server that serves the mistudio API.
OTHER_EXTENSIONS = ("jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under `root` (links not followed) → (kind, size): a cheap fingerprint of a cache."""
    out: dict[str, tuple[str, int]] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = ("link", len(os.readlink(path)))
        elif path.is_file():
            out[str(path.relative_to(root))] = ("file", path.stat().st_size)
        else:
            out[str(path.relative_to(root))] = ("dir", 0)
    return out


def partials(cache: Path) -> list[Path]:
    """Partial files anywhere in the cache: ours (`*.part`, journals) and huggingface_hub's."""
    if not cache.exists():
        return []
    return [p for pattern in ("*.incomplete", "*.part", "*.journal") for p in cache.rglob(pattern)]


def worker_pids(db_url: str) -> list[int]:
    """Download workers of this catalog that still run on this host (from the rows' `host:pid`)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    if db_url.startswith("sqlite:///") and not Path(db_url.split(":///", 1)[1]).exists():
        return []
    engine = create_engine(db_url)
    try:
        with engine.connect() as db:
            workers = db.execute(text("SELECT worker FROM models WHERE worker IS NOT NULL")).scalars().all()
    except DBAPIError:  # no catalog yet
        return []
    finally:
        engine.dispose()
    host = socket.gethostname()
    pids = []
    for worker in workers:
        name, _, pid = worker.rpartition(":")
        if name == host and pid.isdigit():
            try:
                if WORKER_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(int(pid))
            except OSError:
                pass
    return pids


def kill_workers(db_url: str) -> None:
    for pid in worker_pids(db_url):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class JupyterServer:
    """`jupyter server` with the mistudio extension, in its own process, over a cache in `root` and a
    catalog at `db_url` (by default a SQLite file in `root`).

    Its JUPYTER_RUNTIME_DIR is `root/runtime`, so worker logs land in `root/runtime/mistudio/downloads/`.
    """

    def __init__(
        self,
        root: Path,
        hub_url: str,
        *,
        db_url: str | None = None,
        max_parallel: int = 2,
        token: str = "e2e-test-token",
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.root = root
        self.hub_url = hub_url
        self.token = token
        self.cache = root / "cache"
        self.db_url = db_url or f"sqlite:///{root / 'catalog.sqlite'}"
        self.tmp = root / "tmp"
        self.max_parallel = max_parallel
        self.extra_env = env or {}
        self.extra_args = extra_args or []
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = root / "server.log"
        for folder in (self.cache, self.tmp, root / "config", root / "runtime", root / "data", root / "notebooks"):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.root / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.root / "runtime"),
            "JUPYTER_DATA_DIR": str(self.root / "data"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "TMPDIR": str(self.tmp),
            "HF_ENDPOINT": self.hub_url,
            "MISTUDIO_DOWNLOAD_SUMMARY": "0",
            "PYTHONPATH": str(REPO_ROOT),
            **self.extra_env,
        }

    @property
    def worker_logs(self) -> Path:
        return self.root / "runtime" / "mistudio" / "downloads"

    def start(self, timeout: float = 60.0) -> JupyterServer:
        command = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root / 'notebooks'}",
            "--ServerApp.jpserver_extensions=mistudio_jupyter=True",
            *(f"--ServerApp.jpserver_extensions={name}=False" for name in OTHER_EXTENSIONS),
            f"--MiStudio.db_url={self.db_url}",
            f"--MiStudio.cache_dir={self.cache}",
            f"--MiStudio.hub_endpoint={self.hub_url}",
            f"--MiStudio.max_parallel_downloads={self.max_parallel}",
            "--allow-root",
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            command, env=self.env, cwd=self.root, stdout=subprocess.DEVNULL, stderr=self.log_path.open("ab")
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("jupyter server exited:\n" + self.log_path.read_text()[-4000:])
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/models?limit=1", timeout=2)[0] == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError("jupyter server did not answer:\n" + self.log_path.read_text()[-4000:])

    def kill(self) -> None:
        """SIGKILL the server (its download workers, in their own sessions, keep running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def close(self) -> None:
        self.stop()
        kill_workers(self.db_url)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        timeout: float = 60.0,
        prefix: str = API,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or raw bytes) of one request on a fresh connection."""
        status, _, payload = self.exchange(
            method, path, body, raw=raw, headers=headers, auth=auth, timeout=timeout, prefix=prefix
        )
        return status, payload

    def exchange(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        timeout: float = 60.0,
        prefix: str = API,
    ) -> tuple[int, http.client.HTTPMessage, Any]:
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        all_headers = {**({"Authorization": f"token {self.token}"} if auth else {}), **(headers or {})}
        if raw is not None:
            all_headers.setdefault("Content-Type", "application/json")
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, prefix + path, body=raw, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            payload: Any = json.loads(data) if data else None
        except ValueError:
            payload = data
        return response.status, response.headers, payload

    def record(self, model_id: str) -> dict[str, Any]:
        status, payload = self.request("GET", f"/models/{model_id}")
        assert status == 200, payload
        return payload

    def wait_status(self, model_id: str, statuses: set[str] | str, timeout: float = 60.0) -> dict[str, Any]:
        wanted = {statuses} if isinstance(statuses, str) else statuses
        return wait_for(
            lambda: (r := self.record(model_id))["status"] in wanted and r,
            timeout,
            0.05,
            f"{model_id} to reach {wanted}",
        )

    def create(self, repo_id: str, **fields: Any) -> dict[str, Any]:
        status, payload = self.request("POST", "/models", {"repo_id": repo_id, **fields})
        assert status == 200, payload
        return payload

    def ws(self) -> EventClient:
        return EventClient(f"ws://127.0.0.1:{self.port}{API}/events", self.token)


class EventClient:
    """A WebSocket client of the event socket that records every message in a background thread."""

    def __init__(self, url: str, token: str) -> None:
        import websocket

        self.messages: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._socket = websocket.create_connection(url, header=[f"Authorization: token {token}"], timeout=10)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def send(self, request: dict[str, Any]) -> None:
        self._socket.send(json.dumps(request))

    def subscribe(self, channel: str = "models") -> None:
        self.send({"action": "subscribe", "channel": channel})
        wait_for(
            lambda: any(m.get("event") == "subscribed" and m.get("channel") == channel for m in self.messages),
            10,
            what=f"subscribed to {channel}",
        )

    def events(self, model_id: str, event: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m.get("channel") == f"model/{model_id}" and (event is None or m.get("event") == event)
        ]

    def _read(self) -> None:
        import websocket

        while not self._closed.is_set():
            try:
                text = self._socket.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:  # noqa: BLE001 - the socket closed
                return
            if not text:
                return
            self.raw.append(text)
            self.messages.append(json.loads(text))

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(Exception):
            self._socket.close()
        self._thread.join(5)


HUB_SCRIPT = """
import json, sys, threading
from tests.hubserver import HubServer, build_fixtures, default_root
port, faults = int(sys.argv[1]), json.loads(sys.argv[2])
hub = HubServer(default_root(), port=port, repos=build_fixtures(default_root()))
for path, values in faults.items():
    hub.faults.set(path=path, **values)
hub.start()
print(hub.url, flush=True)
threading.Event().wait()
"""


class HubProcess:
    """The test Hub in its own process (so it can really die mid-transfer), on a fixed port."""

    def __init__(self, port: int | None = None, faults: dict[str, dict[str, Any]] | None = None) -> None:
        self.port = port or free_port()
        self.faults = faults or {}
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HUB_SCRIPT, str(self.port), json.dumps(self.faults)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("http"):
            raise RuntimeError("the test Hub process did not start")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


@contextlib.contextmanager
def jupyter(root: Path, hub_url: str, **options: Any) -> Iterator[JupyterServer]:
    server = JupyterServer(root, hub_url, **options).start()
    try:
        yield server
    finally:
        server.close()
