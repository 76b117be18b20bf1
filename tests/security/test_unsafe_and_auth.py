"""Unsafe repos (remote code never executed; pickle-only refused unless allowed), and authentication:
every route and the event socket refuse requests without valid credentials, and cookie-authenticated
writes without the XSRF token are refused — all against a real server process."""

from __future__ import annotations

import http.client
import http.cookies
from typing import Any

import pytest

from mistudio_jupyter.server import openapi
from tests.reliability.live import API, JupyterServer

from .conftest import assert_refusal

MODEL_ID = "0b7a3c52-0000-4000-8000-000000000000"
ROUTES = [
    (method.upper(), path.replace("{id}", MODEL_ID))
    for path, item in openapi.document()["paths"].items()
    if path != "/events"
    for method in item
    if method in ("get", "post", "delete", "put", "patch")
]
WRITES = [(method, path) for method, path in ROUTES if method != "GET"]


def _download(live: JupyterServer, repo_id: str, **body: Any) -> dict[str, Any]:
    model_id = live.create(repo_id)["id"]
    assert live.request("POST", f"/models/{model_id}/download", body)[0] == 202
    return live.wait_status(model_id, {"ready", "failed", "cancelled", "interrupted"}, 60)


def test_pickle_only_is_refused_unless_allowed(live: JupyterServer) -> None:
    refused = _download(live, "tiny/pickle-only")
    assert refused["status"] == "failed" and refused["error"]["code"] == "unsafe_repo", refused
    assert not list(live.cache.glob("models--tiny--pickle-only/blobs/*"))
    allowed = _download(live, "tiny/pickle-only", allow_pickle=True)
    assert allowed["status"] == "ready", allowed


def test_remote_code_is_never_executed(live: JupyterServer) -> None:
    """`tiny/remote-code`'s .py files raise when imported. Its preview warns of them; its download is
    refused without consent; with consent it is downloaded, and architecture, hooks and estimate refuse
    it with `unsafe_repo` rather than import it: transformers never even sets up its cache for repo code,
    and their error appears nowhere."""
    status, preview = live.request("POST", "/models/preview", {"repo_id": "tiny/remote-code"})
    assert status == 200, preview
    assert any("custom code" in warning for warning in preview["warnings"]), preview["warnings"]
    refused = _download(live, "tiny/remote-code")
    assert refused["status"] == "failed" and refused["error"]["code"] == "unsafe_repo", refused
    allowed = _download(live, "tiny/remote-code", allow_remote_code=True)
    assert allowed["status"] == "ready", allowed
    for suffix in ("/architecture", "/hooks", "/estimate"):
        status, payload = live.request("GET", f"/models/{allowed['id']}{suffix}")
        assert_refusal(status, payload)
        assert (status, payload["error"]["code"]) == (400, "unsafe_repo"), (suffix, payload)
    assert not (live.root / "hf_home" / "modules").exists()
    assert "must never be executed" not in live.log_path.read_text()
    assert "must never be executed" not in "".join(p.read_text() for p in live.worker_logs.glob("*.log"))


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "token wrong"}, {"Authorization": "Bearer wrong"}, {"Cookie": "username-127-0-0-1=forged"}],
    ids=["none", "wrong", "bearer", "cookie"],
)
def test_every_route_refuses_unauthenticated_requests(live: JupyterServer, headers: dict[str, str]) -> None:
    assert len(ROUTES) >= 14
    for method, path in ROUTES:
        status, payload = live.request(method, path, {} if method == "POST" else None, headers=headers, auth=False)
        assert status == 403, (method, path, status, payload)
        assert "Traceback" not in str(payload)
    status, payload = live.request("GET", "/models?token=wrong", auth=False)
    assert status == 403


def test_event_socket_refuses_unauthenticated_connections(live: JupyterServer) -> None:
    for headers in ({}, {"Authorization": "token wrong"}):
        connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
        connection.request(
            "GET",
            f"{API}/events",
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                **headers,
            },
        )
        assert connection.getresponse().status == 403
        connection.close()


def test_cookie_authenticated_writes_need_xsrf(live: JupyterServer) -> None:
    cookies: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    for page in ("/login", f"/login?token={live.token}"):
        _, headers, _ = live.exchange("GET", page, auth=False, prefix="")
        for header in headers.get_all("Set-Cookie") or []:
            cookies.load(header)
    assert "_xsrf" in cookies and any(name.startswith("username-") for name in cookies)
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())
    assert live.request("GET", "/models", headers={"Cookie": cookie}, auth=False)[0] == 200
    for method, path in WRITES:
        status, payload = live.request(
            method, path, {} if method == "POST" else None, headers={"Cookie": cookie}, auth=False
        )
        assert status == 403, (method, path, status, payload)
    status, payload = live.request(
        "POST",
        "/models",
        {"repo_id": "tiny/gpt2"},
        auth=False,
        headers={"Cookie": cookie, "X-XSRFToken": cookies["_xsrf"].value},
    )
    assert status == 200, payload
    assert (
        live.request(
            "DELETE",
            f"/models/{payload['id']}",
            auth=False,
            headers={"Cookie": cookie, "X-XSRFToken": cookies["_xsrf"].value},
        )[0]
        == 200
    )
