"""A Jupyter server with the mistudio extension over the test Hub, and a client that checks every
response against the OpenAPI document."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (pytest-jupyter's fixtures, for these tests only)

from mistudio_jupyter.core.settings import Settings
from mistudio_jupyter.server import MiStudio, openapi

API = "mistudio/api/v1"


@pytest.fixture
def jp_server_config(settings: Settings) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"mistudio_jupyter": True, "jupyter_server_terminals": False},
            "terminals_enabled": False,
        },
        "MiStudio": {
            "cache_dir": str(settings.cache_dir),
            "db_url": settings.db_url,
            "hub_endpoint": settings.hub_endpoint,
            "max_parallel_downloads": 3,
        },
    }


def route_of(path: str) -> str:
    """The OpenAPI path template a concrete API path falls under (fixed paths win over `{id}`)."""
    templates = sorted(openapi.document()["paths"], key=lambda template: template.count("{"))
    for template in templates:
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return template
    raise AssertionError(f"{path} is not in the OpenAPI document")


def check_response(path: str, method: str, status: int, payload: Any) -> None:
    """Assert that a response matches what the document promises for this route, method and status."""
    route = route_of(path.split("?")[0])
    responses = openapi.operation(route, method)["responses"]
    key = str(status) if str(status) in responses else "default"
    if "$ref" in responses[key]:
        pointer = responses[key]["$ref"].lstrip("#") + "/content/application~1json/schema"
    else:
        escaped = route.replace("~", "~0").replace("/", "~1")
        pointer = f"/paths/{escaped}/{method.lower()}/responses/{key}/content/application~1json/schema"
    openapi.validator(pointer).validate(payload)


def check_event(event: dict[str, Any]) -> None:
    openapi.validator("/components/schemas/EventMessage").validate(event)


class Api:
    """`await api("POST", "/models", {...})` → (status, JSON), validated against the document."""

    def __init__(self, fetch: Callable[..., Awaitable[Any]]) -> None:
        self._fetch = fetch

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        if raw is None and method in ("POST", "PUT"):
            raw = json.dumps(body if body is not None else {}).encode()
        response = await self._fetch(
            API + path, method=method, body=raw, params=params, raise_error=False, allow_nonstandard_methods=True
        )
        payload = json.loads(response.body) if response.body else None
        assert response.headers.get("Content-Type", "").startswith("application/json"), response.body[:200]
        check_response(path, method, response.code, payload)
        return response.code, payload


@pytest.fixture
def api(jp_fetch: Callable[..., Awaitable[Any]]) -> Api:
    return Api(jp_fetch)


@pytest.fixture
def mistudio(jp_serverapp: Any) -> MiStudio:
    """The running extension app (its `manager`, `events`…)."""
    (app,) = jp_serverapp.extension_manager.extension_apps["mistudio_jupyter"]
    return app
