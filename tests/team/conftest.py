"""A real JupyterHub (dummy authenticator, configurable-http-proxy) with the team store as a managed
service over the test Hub, three users whose roles grant different `custom:mistudio:*` scopes, and
their API tokens obtained through the Hub's REST API."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from sqlalchemy.engine import make_url

from scripts.team_demo import API, CUSTOM_SCOPES, SERVICE, answers
from tests.hubserver import HubServer
from tests.polling import wait_for
from tests.ports import free_port
from tests.postgres import PostgresCluster
from tests.prerequisites import missing

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "team-store-test-password"
HF_TOKEN = "hf_test_good"  # the store's own token for the Hub (the test Hub grants it the gated repos)
# who may do what: alice everything, fred download and delete but not force a delete, bob read and
# download, carol read only; erin may reach the service but holds no mistudio scope, dave may not even reach it
ROLES: dict[str, list[str] | None] = {
    "alice": ["custom:mistudio:admin", "custom:mistudio:download"],
    "fred": ["custom:mistudio:delete", "custom:mistudio:download"],
    "bob": ["custom:mistudio:download"],
    "carol": ["custom:mistudio:read"],
    "erin": [],
    "dave": None,
}

CONFIG = """
import json, sys
settings = json.loads({settings!r})
c.JupyterHub.bind_url = settings["bind_url"]
c.JupyterHub.hub_bind_url = settings["hub_bind_url"]
c.ConfigurableHTTPProxy.api_url = settings["proxy_api_url"]
c.ConfigurableHTTPProxy.pid_file = settings["proxy_pid_file"]
c.JupyterHub.db_url = settings["db_url"]
c.JupyterHub.cookie_secret_file = settings["cookie_secret_file"]
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = settings["password"]
c.Authenticator.allowed_users = set(settings["roles"])
custom_scopes = {custom_scopes}
c.JupyterHub.custom_scopes = custom_scopes
c.JupyterHub.services = [
    {{
        "name": settings["service"],
        "url": settings["store_url"],
        "command": [sys.executable, "-m", "mistudio_jupyter", "store"],
        "environment": settings["store_environment"],
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": list(custom_scopes),
    }}
]
access = f"access:services!service={{settings['service']}}"
c.JupyterHub.load_roles = [
    {{"name": f"mistudio-{{name}}", "scopes": [access, *scopes], "users": [name]}}
    for name, scopes in settings["roles"].items()
    if scopes is not None
]
"""


@dataclass
class TeamHub:
    url: str
    tokens: dict[str, str]
    cache_dir: Path
    db_url: str
    log_path: Path
    hub_pid: int
    answers: list[bytes] = field(default_factory=list)  # every body the store sent, for the token checks

    def call(self, user: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A request to the store's REST API through the Hub's proxy, as `user` (by API token)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + API + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.tokens[user]}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        assert not any(token.encode() in raw for token in [*self.tokens.values(), HF_TOKEN]), "a response has a token"
        self.answers.append(raw)
        return status, json.loads(raw)


def store_process(hub_pid: int) -> psutil.Process:
    """The store, a managed service: a child process of the Hub."""
    children = psutil.Process(hub_pid).children()
    (store,) = (child for child in children if "mistudio_jupyter store" in " ".join(child.cmdline()))
    return store


def _check_prerequisites() -> None:
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        missing("JupyterHub (pip install 'mistudio-jupyter[test]')")
    if shutil.which("configurable-http-proxy") is None:
        missing("configurable-http-proxy (npm install -g configurable-http-proxy)")


def _token(url: str, user: str) -> str:
    """A new API token of `user`, asked for with the user's password as the Hub's REST API allows."""
    request = urllib.request.Request(
        f"{url}/hub/api/users/{user}/tokens",
        data=json.dumps({"auth": {"username": user, "password": PASSWORD}, "note": "team store test"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["token"]


@pytest.fixture(scope="module")
def team_hub(
    _hub_server: HubServer, postgres_server: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TeamHub]:
    """The team as it runs: the store's catalog on PostgreSQL (the single-user suites keep SQLite)."""
    _check_prerequisites()
    with postgres_server.database() as db_url:
        yield from _team_hub(_hub_server, db_url, tmp_path_factory.mktemp("jupyterhub"))


def _team_hub(_hub_server: HubServer, db_url: str, root: Path) -> Iterator[TeamHub]:
    bind_url, store_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    shared = Path(tempfile.mkdtemp(prefix="mistudio-shared-"))  # where every user of the machine may look
    shared.chmod(0o755)
    cache_dir = shared / "cache"
    settings = {
        "bind_url": bind_url,
        "hub_bind_url": f"http://127.0.0.1:{free_port()}",
        "proxy_api_url": f"http://127.0.0.1:{free_port()}",
        "proxy_pid_file": str(root / "proxy.pid"),
        "db_url": f"sqlite:///{root / 'jupyterhub.sqlite'}",
        "cookie_secret_file": str(root / "cookie_secret"),
        "password": PASSWORD,
        "roles": ROLES,
        "service": SERVICE,
        "store_url": store_url,
        "store_environment": {
            "PYTHONPATH": str(REPO),
            "HF_ENDPOINT": _hub_server.url,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(root / "hf-home"),
            "HF_TOKEN": HF_TOKEN,
            "MISTUDIO_CACHE_DIR": str(cache_dir),
            "MISTUDIO_DB_URL": db_url,
            "MISTUDIO_DOWNLOAD_SUMMARY": "0",
        },
    }
    config = root / "jupyterhub_config.py"
    config.write_text(CONFIG.format(settings=json.dumps(settings), custom_scopes=repr(CUSTOM_SCOPES)))
    log_path = root / "jupyterhub.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=root, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: process.poll() is not None or answers(bind_url + "/hub/api/"), 60, 0.2, "JupyterHub")
        if process.poll() is not None:
            raise AssertionError(f"JupyterHub exited:\n{log_path.read_text()[-4000:]}")
        tokens = {user: _token(bind_url, user) for user in ROLES}
        wait_for(lambda: answers(bind_url + API + "/system", tokens["carol"]), 60, 0.2, "the store")
        yield TeamHub(bind_url, tokens, cache_dir, db_url, log_path, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(shared, ignore_errors=True)


def catalog_rows(db_url: str) -> str:
    """Every row of every table of a PostgreSQL catalog, as text."""
    url = make_url(db_url)
    connection = psycopg.connect(
        host=url.query["host"], port=int(str(url.query["port"])), user=url.username, dbname=url.database
    )
    with connection:
        tables = [name for (name,) in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert {"models", "audit"} <= set(tables)
        return "\n".join(str(row) for table in tables for row in connection.execute(f'SELECT * FROM "{table}"'))
