"""Nothing of the extension is reachable without Jupyter credentials; cookie writes need XSRF."""

from __future__ import annotations

import http.cookies
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from mistudio_jupyter.server import openapi

from .conftest import API

pytestmark = pytest.mark.each_backend

REPO = Path(__file__).resolve().parents[2]
MODEL_ID = "0b7a3c52-0000-4000-8000-000000000000"
ROUTES = [
    (method.upper(), path.replace("{id}", MODEL_ID))
    for path, item in openapi.document()["paths"].items()
    if path != "/events"
    for method in item
    if method in ("get", "post", "put", "delete")
]


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return {**jp_server_config, "ServerApp": {**jp_server_config["ServerApp"], "allow_unauthenticated_access": False}}


def test_check_auth_script_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_auth.py")], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr


def test_every_documented_route_is_probed() -> None:
    assert len(ROUTES) == 19


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "token not-the-token"}], ids=["none", "wrong-token"])
async def test_route_refuses_unauthenticated_requests(
    http_server_client: Any,
    jp_base_url: str,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    response = await http_server_client.fetch(
        f"{jp_base_url}{API}{path}",
        method=method,
        headers=headers,
        raise_error=False,
        body=b"{}" if method in ("POST", "PUT") else None,
        allow_nonstandard_methods=True,
        follow_redirects=False,
    )
    assert response.code == 403
    assert b"Traceback" not in response.body


@pytest.mark.parametrize("headers", [{}, {"Authorization": "token not-the-token"}], ids=["none", "wrong-token"])
async def test_event_socket_refuses_unauthenticated_connections(
    http_server_client: Any,
    jp_http_port: int,
    jp_base_url: str,
    headers: dict[str, str],
) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{jp_http_port}{jp_base_url}{API}/events", headers=headers))
    assert refused.value.code == 403


async def test_cookie_authenticated_writes_need_xsrf(
    http_server_client: Any, jp_base_url: str, jp_serverapp: Any
) -> None:
    token = jp_serverapp.identity_provider.token
    cookies: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    for page in ("login", f"login?token={token}"):  # the login form sets _xsrf; the token login, the user cookie
        response = await http_server_client.fetch(f"{jp_base_url}{page}", follow_redirects=False, raise_error=False)
        for header in response.headers.get_list("Set-Cookie"):
            cookies.load(header)
    assert "_xsrf" in cookies and any(name.startswith("username-") for name in cookies)
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())
    url = f"{jp_base_url}{API}/models"

    listing = await http_server_client.fetch(url, headers={"Cookie": cookie}, raise_error=False)
    assert listing.code == 200
    body = b'{"repo_id": "tiny/gpt2"}'
    forged = await http_server_client.fetch(
        url, method="POST", body=body, headers={"Cookie": cookie}, raise_error=False
    )
    assert forged.code == 403
    allowed = await http_server_client.fetch(
        url,
        method="POST",
        body=body,
        raise_error=False,
        headers={"Cookie": cookie, "X-XSRFToken": cookies["_xsrf"].value},
    )
    assert allowed.code == 200
