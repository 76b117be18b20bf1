"""The team store as a JupyterHub service: OAuth tokens, custom scopes, the audit log."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request

import websocket

from tests.polling import wait_for
from tests.server.conftest import check_response

from .conftest import API, HF_TOKEN, PASSWORD, TeamHub, catalog_rows, store_process

REPO_ID = "tiny/gpt2"


def _ready(team_hub: TeamHub, user: str, model_id: str) -> bool:
    status, record = team_hub.call(user, "GET", f"/models/{model_id}")
    assert status == 200 and record["status"] not in ("failed", "cancelled", "interrupted"), record
    return record["status"] == "ready"


def test_a_user_with_download_scope_downloads_and_everyone_with_read_sees_it(team_hub: TeamHub) -> None:
    status, record = team_hub.call("bob", "POST", "/models", {"repo_id": REPO_ID})
    assert status == 200 and record["requested_by"] == "bob"
    check_response("/models", "POST", status, record)
    status, started = team_hub.call("bob", "POST", f"/models/{record['id']}/download", {})
    assert status == 202, started
    wait_for(lambda: _ready(team_hub, "carol", record["id"]), 120, 0.2, "the download")
    status, listed = team_hub.call("carol", "GET", "/models")
    check_response("/models", "GET", status, listed)
    assert [(model["repo_id"], model["requested_by"]) for model in listed["models"]] == [(REPO_ID, "bob")]


def test_a_missing_scope_is_403_forbidden(team_hub: TeamHub) -> None:
    status, record = team_hub.call("bob", "POST", "/models", {"repo_id": "tiny/llama"})
    assert status == 200
    refusals = [
        ("carol", "POST", "/models", {"repo_id": "tiny/pythia"}),
        ("carol", "POST", f"/models/{record['id']}/download", {}),
        ("carol", "POST", f"/models/{record['id']}/cancel", {}),
        ("bob", "DELETE", f"/models/{record['id']}", None),
        ("bob", "POST", "/cache/prune", {}),
        ("bob", "GET", "/audit", None),
    ]
    for user, method, path, body in refusals:
        status, error = team_hub.call(user, method, path, body)
        assert status == 403 and error["error"]["code"] == "forbidden", (user, method, path, error)
        assert "custom:mistudio:" in error["error"]["message"]
        check_response(path, method, status, error)
    assert team_hub.call("carol", "GET", f"/models/{record['id']}")[1]["status"] == "pending"


def test_me_lists_what_the_hubs_scopes_grant_each_user(team_hub: TeamHub) -> None:
    granted = {
        "alice": ["read", "download", "delete", "admin"],
        "fred": ["read", "download", "delete"],
        "bob": ["read", "download"],
        "carol": ["read"],
        "erin": [],
    }
    for user, can in granted.items():
        status, me = team_hub.call(user, "GET", "/me")
        assert status == 200 and me == {"name": user, "can": can}, (user, me)
        check_response("/me", "GET", status, me)


def test_a_user_without_any_mistudio_scope_is_refused(team_hub: TeamHub) -> None:
    for user in ("erin", "dave"):  # with and without access to the service
        for method, path, body in (("GET", "/models", None), ("POST", "/models", {"repo_id": REPO_ID})):
            status, error = team_hub.call(user, method, path, body)
            assert status == 403 and error["error"]["code"] == "forbidden", (user, path, error)


def test_delete_and_the_audit_log(team_hub: TeamHub) -> None:
    status, record = team_hub.call("alice", "POST", "/models", {"repo_id": "tiny/pythia"})
    model_id = record["id"]
    assert team_hub.call("alice", "POST", f"/models/{model_id}/download", {})[0] == 202
    wait_for(lambda: _ready(team_hub, "alice", model_id), 120, 0.2, "the download")
    status, deleted = team_hub.call("alice", "DELETE", f"/models/{model_id}")
    assert status == 200 and deleted["id"] == model_id
    status, audit = team_hub.call("alice", "GET", "/audit")
    check_response("/audit", "GET", status, audit)
    done = [(entry["user"], entry["action"], entry["repo_id"]) for entry in audit["entries"]]
    assert ("alice", "delete", "tiny/pythia") in done and ("alice", "download", "tiny/pythia") in done
    assert ("bob", "download", REPO_ID) in done
    assert done.index(("alice", "delete", "tiny/pythia")) < done.index(("alice", "download", "tiny/pythia"))


def test_no_token_is_written_to_the_catalog_or_the_log(team_hub: TeamHub) -> None:
    """Neither the users' tokens, nor the store's own Hub token, nor its HF_TOKEN."""
    assert team_hub.call("alice", "GET", "/audit")[0] == 200
    stored = catalog_rows(team_hub.db_url)
    logged = team_hub.log_path.read_text()
    assert "alice" in stored
    store_token = store_process(team_hub.hub_pid).environ()["JUPYTERHUB_API_TOKEN"]
    for token in [*team_hub.tokens.values(), store_token, HF_TOKEN]:
        assert token not in stored and token not in logged


def _socket(team_hub: TeamHub, user: str) -> websocket.WebSocket:
    url = team_hub.url.replace("http://", "ws://") + API + "/events"
    return websocket.create_connection(url, header=[f"Authorization: token {team_hub.tokens[user]}"], timeout=30)


def test_the_event_stream_needs_the_read_scope(team_hub: TeamHub) -> None:
    for user in ("erin", "dave"):
        try:
            _socket(team_hub, user).close()
        except websocket.WebSocketBadStatusException as refused:
            assert refused.status_code == 403
        else:
            raise AssertionError(f"{user}, without custom:mistudio:read, opened the event stream")
    connection = _socket(team_hub, "carol")
    try:
        connection.send('{"action": "subscribe", "channel": "models"}')
        assert '"subscribed"' in connection.recv()
    finally:
        connection.close()


def _mistudio(team_hub: TeamHub, *argv: str, hub_environment: bool = False) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MISTUDIO_DB_URL": team_hub.db_url, "MISTUDIO_CACHE_DIR": str(team_hub.cache_dir)}
    for name in ("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_API_TOKEN"):
        environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mistudio_jupyter", *argv], env=environment, capture_output=True, text=True, timeout=60
    )


def test_mistudio_audit_lists_the_store_log(team_hub: TeamHub) -> None:
    listed = _mistudio(team_hub, "audit", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert entries == team_hub.call("alice", "GET", "/audit")[1]["entries"]
    table = _mistudio(team_hub, "audit", "--limit", "1")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == [
        "WHEN",
        "USER",
        "ACTION",
        "REPO",
        "REVISION",
        "ID",
    ]
    assert len(table.stdout.splitlines()) == 2 and entries[0]["action"] in table.stdout


def test_mistudio_store_outside_a_hub_says_what_it_needs(team_hub: TeamHub) -> None:
    outside = _mistudio(team_hub, "store", "--json")
    assert outside.returncode == 1
    error = json.loads(outside.stderr)["error"]
    assert error["code"] == "invalid_argument" and "JUPYTERHUB_SERVICE_URL" in error["message"]


def test_a_browser_session_reaches_the_store_through_hub_oauth(team_hub: TeamHub) -> None:
    """Log in to the Hub with a password, on to the store: its OAuth round trip ends in the API."""
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with browser.open(team_hub.url + "/hub/login", timeout=30) as page:
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.read().decode())
    assert xsrf is not None
    form = urllib.parse.urlencode({"username": "carol", "password": PASSWORD, "_xsrf": xsrf[1]}).encode()
    login = team_hub.url + "/hub/login?" + urllib.parse.urlencode({"next": API + "/models"})
    with browser.open(login, data=form, timeout=30) as response:
        assert response.status == 200 and response.url == team_hub.url + API + "/models"
        assert {model["repo_id"] for model in json.loads(response.read())["models"]} >= {REPO_ID}


def test_a_kernels_lease_blocks_a_delete_and_only_an_admin_forces_it(team_hub: TeamHub) -> None:
    status, record = team_hub.call("bob", "POST", "/models", {"repo_id": "tiny/qwen2"})
    model_id = record["id"]
    status, lease = team_hub.call("carol", "POST", f"/models/{model_id}/leases", {"holder": "gpu1 pid 4242 kernel"})
    assert status == 201 and lease["holder"] == "carol@gpu1 pid 4242 kernel", lease  # a reader may run experiments
    check_response(f"/models/{model_id}/leases", "POST", status, lease)
    status, renewed = team_hub.call("carol", "PUT", f"/leases/{lease['id']}", {})
    assert status == 200 and renewed["heartbeat_at"] >= lease["heartbeat_at"]
    assert [held["holder"] for held in team_hub.call("bob", "GET", f"/models/{model_id}")[1]["leases"]] == [
        "carol@gpu1 pid 4242 kernel"
    ]

    status, refused = team_hub.call("fred", "DELETE", f"/models/{model_id}")
    assert status == 409 and refused["error"]["code"] == "conflict", refused
    assert "in use by carol@gpu1 pid 4242 kernel since" in refused["error"]["message"]
    status, forbidden = team_hub.call("fred", "DELETE", f"/models/{model_id}?force=true")
    assert status == 403 and forbidden["error"]["code"] == "forbidden"
    assert "custom:mistudio:admin" in forbidden["error"]["message"]
    check_response(f"/models/{model_id}", "DELETE", status, forbidden)

    status, deleted = team_hub.call("alice", "DELETE", f"/models/{model_id}?force=true")
    assert status == 200 and deleted["id"] == model_id
    status, gone = team_hub.call("carol", "PUT", f"/leases/{lease['id']}", {})
    assert status == 404 and gone["error"]["code"] == "not_found"
    done = [
        (entry["user"], entry["action"], entry["model_id"])
        for entry in team_hub.call("alice", "GET", "/audit")[1]["entries"]
    ]
    assert ("alice", "delete", model_id) in done and ("fred", "delete", model_id) not in done
