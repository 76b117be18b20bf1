"""`make team-demo`: the team store on one machine. JupyterHub with two users, a PostgreSQL catalog,
the `mistudio store` service over it and the demo Hub serving small models, until Ctrl-C.

alice may download and delete (even a model a kernel has loaded), bob may read; both can start their
own JupyterLab from the Hub, which hands their servers the store's URL and the shared cache (read-only
for them in a real deployment, see docs/team-store.md). Everything runs as the current user, except
PostgreSQL, which refuses root and runs as the `postgres` user then.

    .venv/bin/python -m scripts.team_demo [--port 8000] [--root .demo/team] [--hub-root .demo/hub]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.hubserver import HubServer, build_fixtures  # noqa: E402
from tests.polling import wait_for  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.postgres import PostgresCluster, missing_reason  # noqa: E402

SERVICE = "mistudio"
API = f"/services/{SERVICE}/mistudio/api/v1"
READ, DOWNLOAD, DELETE, ADMIN = (f"custom:mistudio:{name}" for name in ("read", "download", "delete", "admin"))
CUSTOM_SCOPES = {
    READ: {"description": "List models, read their details and follow download events"},
    DOWNLOAD: {"description": "Download, resume and cancel models in the team store", "subscopes": [READ]},
    DELETE: {"description": "Delete models, prune the cache and read the audit log", "subscopes": [READ]},
    ADMIN: {"description": "Force the delete of a model that a running kernel has loaded", "subscopes": [DELETE]},
}
# the demo's users and their mistudio scopes; the first one is a JupyterHub admin
DEMO_USERS = {"alice": [DOWNLOAD, ADMIN], "bob": [READ]}

CONFIG = """
import json, sys
from jupyterhub.auth import Authenticator

settings = json.loads({settings!r})


class DemoAuthenticator(Authenticator):
    \"\"\"Each demo user signs in with the password the demo printed.\"\"\"

    async def authenticate(self, handler, data):
        name = data.get("username", "")
        if settings["passwords"].get(name) == data.get("password"):
            return name
        return None


c.JupyterHub.bind_url = settings["bind_url"]
c.JupyterHub.hub_bind_url = settings["hub_bind_url"]
c.ConfigurableHTTPProxy.api_url = settings["proxy_api_url"]
c.ConfigurableHTTPProxy.pid_file = settings["root"] + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + settings["root"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = settings["root"] + "/cookie_secret"
c.JupyterHub.authenticator_class = DemoAuthenticator
c.Authenticator.allowed_users = set(settings["passwords"])
c.Authenticator.admin_users = set(settings["admins"])
c.JupyterHub.custom_scopes = settings["custom_scopes"]
c.JupyterHub.services = [
    {{
        "name": settings["service"],
        "url": settings["store_url"],
        "command": [sys.executable, "-m", "mistudio_jupyter", "store"],
        "environment": settings["store_environment"],
        "cwd": settings["root"],
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": list(settings["custom_scopes"]),
    }}
]
access = "access:services!service=" + settings["service"]
c.JupyterHub.load_roles = [
    {{"name": "mistudio-" + name, "scopes": [access, *scopes], "users": [name]}}
    for name, scopes in settings["roles"].items()
]
# users' own JupyterLab, started as the Hub's account in a home folder of the demo
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = settings["root"] + "/home/{{username}}"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = settings["server_args"]
c.Spawner.environment = settings["user_environment"]
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", access, *settings["custom_scopes"]]
"""


@dataclass
class TeamDemo:
    """The demo's processes, started by `start()` and stopped by `stop()` in the reverse order."""

    root: Path
    hub_root: Path
    port: int = 8000
    users: dict[str, list[str]] = field(default_factory=lambda: dict(DEMO_USERS))
    store_environment: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    hub: HubServer | None = None
    postgres: PostgresCluster | None = None
    db_url: str = ""
    jupyterhub: subprocess.Popen[bytes] | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def log_path(self) -> Path:
        """The Hub's log, which has the store's."""
        return self.root / "jupyterhub.log"

    @property
    def store_runtime_dir(self) -> Path:
        """The store's runtime folder, with its download workers' logs."""
        return self.root / "store-runtime"

    def start(self) -> TeamDemo:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.hub = self._stack.enter_context(HubServer(self.hub_root, repos=build_fixtures(self.hub_root, demo=True)))
        self.postgres = self._stack.enter_context(PostgresCluster())
        self.db_url = self._stack.enter_context(self.postgres.database(name="mistudio"))
        self.passwords = {name: secrets.token_urlsafe(9) for name in self.users}
        config = self.root / "jupyterhub_config.py"
        config.unlink(missing_ok=True)
        config.touch(mode=0o600)  # it holds the passwords
        config.write_text(CONFIG.format(settings=json.dumps(self._settings())))
        with self.log_path.open("w") as log:
            # a session of its own: Ctrl-C reaches this script, which stops the Hub and what it started
            self.jupyterhub = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config)],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._stack.callback(_stop_process, self.jupyterhub)
        wait_for(self._hub_answers, 90, 0.2, "JupyterHub")
        token = self.token(next(iter(self.users)))
        wait_for(lambda: answers(self.url + API + "/system", token), 90, 0.2, "the store")

    def _hub_answers(self) -> bool:
        assert self.jupyterhub is not None
        if self.jupyterhub.poll() is not None:
            raise RuntimeError(f"JupyterHub exited:\n{self.log_path.read_text()[-4000:]}")
        return answers(self.url + "/hub/api/")

    def _settings(self) -> dict[str, Any]:
        assert self.hub is not None
        hub_environment = {"HF_ENDPOINT": self.hub.url, "HF_HUB_DISABLE_XET": "1", "PYTHONPATH": str(REPO)}
        return {
            "root": str(self.root),
            "bind_url": self.url,
            "hub_bind_url": f"http://127.0.0.1:{free_port()}",
            "proxy_api_url": f"http://127.0.0.1:{free_port()}",
            "passwords": self.passwords,
            "admins": list(self.users)[:1],
            "roles": self.users,
            "custom_scopes": CUSTOM_SCOPES,
            "service": SERVICE,
            "store_url": f"http://127.0.0.1:{free_port()}",
            "store_environment": {
                **hub_environment,
                "HF_HOME": str(self.root / "store-hf-home"),
                "JUPYTER_RUNTIME_DIR": str(self.store_runtime_dir),
                "MISTUDIO_CACHE_DIR": str(self.cache_dir),
                "MISTUDIO_DB_URL": self.db_url,
                **self.store_environment,
            },
            "user_environment": {
                **hub_environment,
                "MISTUDIO_STORE_URL": f"{self.url}/services/{SERVICE}/",
                "MISTUDIO_CACHE_DIR": str(self.cache_dir),
            },
            "server_args": ["--allow-root"] if os.geteuid() == 0 else [],
        }

    def token(self, user: str) -> str:
        """A new API token of `user`, asked for with the user's password through the Hub's REST API."""
        body = {"auth": {"username": user, "password": self.passwords[user]}, "note": "mistudio team demo"}
        request = urllib.request.Request(
            f"{self.url}/hub/api/users/{user}/tokens",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.loads(response.read())["token"])

    def stop(self) -> None:
        self._stack.close()

    def describe(self) -> str:
        """What a user needs: the Hub's URL, the logins, the store's API and the catalog."""
        lines = [f"JupyterHub: {self.url}"]
        for name, scopes in self.users.items():
            may = ", ".join(scope.rsplit(":", 1)[1] for scope in scopes)
            lines.append(f"  login {name} password {self.passwords[name]}  (mistudio: {may})")
        lines += [
            f"The store's API: {self.url}{API}",
            f"Catalog: {self.db_url}",
            f"Shared cache: {self.cache_dir}",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)


def answers(url: str, token: str | None = None) -> bool:
    """Whether `url` answers 200 (through the proxy: once the Hub has added its route)."""
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, which JupyterHub answers by stopping the store, the users' servers and the proxy."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM stops the demo as Ctrl-C does."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.team_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="JupyterHub's port on 127.0.0.1")
    parser.add_argument("--root", type=Path, default=REPO / ".demo" / "team", help="the demo's state")
    parser.add_argument("--hub-root", type=Path, default=REPO / ".demo" / "hub", help="the demo Hub's models")
    args = parser.parse_args(argv)
    reason = missing_reason()
    if reason:
        print(f"the team demo needs {reason} (make postgres-deps)", file=sys.stderr)
        return 1
    demo = TeamDemo(args.root.resolve(), args.hub_root.resolve(), args.port)
    with _interrupted_by_sigterm():
        try:
            demo.start()
            print(demo.describe(), flush=True)
            while demo.jupyterhub is not None and demo.jupyterhub.poll() is None:
                time.sleep(0.5)
            print(f"JupyterHub exited; its log: {demo.log_path}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
