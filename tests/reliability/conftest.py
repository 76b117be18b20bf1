"""Fixtures of the end-to-end suites: a live Jupyter server over the session test Hub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubserver import HubServer, RepoSpec

from .live import JupyterServer


@pytest.fixture
def server(hub: HubServer, tmp_path: Path, db_url: str) -> Iterator[JupyterServer]:
    """A `jupyter server` process with the extension over a fresh catalog and cache and the test Hub."""
    live = JupyterServer(tmp_path / "jupyter", hub.url, db_url=db_url).start()
    try:
        yield live
    finally:
        live.close()


def lfs_file(repos: dict[str, RepoSpec], repo_id: str, path: str = "model.safetensors"):
    """The fixture's RepoFile at `path` on main (size, sha256)."""
    return repos[repo_id].commit("main").files[path]


def cdn_bytes(hub: HubServer, repo_id: str, path: str = "model.safetensors") -> int:
    """Body bytes the Hub's CDN sent for one file of a repo since the log was cleared."""
    return sum(
        r.bytes_sent
        for r in hub.log
        if r.method == "GET" and r.path.startswith("/cdn/") and r.path.endswith(f"/{repo_id}/{path}")
    )


def assert_fetched_once(hub: HubServer, repo_id: str, size: int, path: str = "model.safetensors") -> None:
    """The CDN sent the file once: a retried or split range may fetch again what was in flight (a busy
    CPU can make loopback look like a WAN, where streams split ranges), a second transfer cannot hide
    within 1%."""
    sent = cdn_bytes(hub, repo_id, path)
    assert size <= sent <= size * 1.01, f"{repo_id} {path}: {sent} bytes sent for {size}, a second transfer"
