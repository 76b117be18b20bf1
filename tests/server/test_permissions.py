"""`GET /me` says what the user may do, as Jupyter's authorizer decides it; the front ends show only
those actions."""

from __future__ import annotations

from typing import Any

import pytest
from jupyter_server.auth import Authorizer

from .conftest import Api

pytestmark = pytest.mark.each_backend


class ReadOnly(Authorizer):
    """A deployment's authorizer that lets this user read, never write."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return action == "read"


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return {**jp_server_config, "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": ReadOnly}}


async def test_a_read_only_user_may_only_read_and_is_refused_the_rest(api: Api) -> None:
    status, me = await api("GET", "/me")
    assert status == 200 and me["can"] == ["read"]
    assert (await api("GET", "/models"))[0] == 200
    status, refused = await api("POST", "/models", {"repo_id": "tiny/gpt2"})
    assert status == 403 and refused["error"]["code"] == "forbidden"
