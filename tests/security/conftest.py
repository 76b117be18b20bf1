"""One live Jupyter server (a real process) for the hostile-input suites of a module, and a fingerprint
of everything a request could change: the catalog listing and the files of the cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hubserver import HubServer
from tests.reliability.live import JupyterServer, tree

# Statuses the API documents for refusals (server/errors.py STATUS_BY_CODE, plus Jupyter's 403/405).
DOCUMENTED_4XX = {400, 401, 403, 404, 405, 409, 413, 422}


@pytest.fixture(scope="module")
def live(_hub_server: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    root = tmp_path_factory.mktemp("security") / "jupyter"
    server = JupyterServer(root, _hub_server.url, env={"HF_HOME": str(root / "hf_home")}).start()
    try:
        yield server
    finally:
        server.close()


def state(server: JupyterServer) -> tuple[Any, dict[str, tuple[str, int]]]:
    """What a refused request must not change: every catalog row and every file of the cache."""
    status, listing = server.request("GET", "/models?limit=10000")
    assert status == 200
    return listing, tree(server.cache)


def assert_refusal(status: int, payload: Any) -> None:
    """A documented 4xx with the one error shape, and no traceback."""
    assert status in DOCUMENTED_4XX, (status, payload)
    assert isinstance(payload, dict) and set(payload) == {"error"}, payload
    assert isinstance(payload["error"].get("code"), str) and isinstance(payload["error"].get("message"), str)
    assert "Traceback" not in payload["error"]["message"] and 'File "' not in payload["error"]["message"]


def plant_outside(root: Path) -> Path:
    outside = root / "outside"
    outside.mkdir(exist_ok=True)
    return outside
