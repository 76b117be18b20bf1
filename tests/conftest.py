"""Test-wide setup: every Hugging Face call goes to the in-process test Hub, never to huggingface.co.

huggingface_hub reads its endpoint once, at import, so the environment is set here, at conftest
import, before any test module imports it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.ports import free_port  # noqa: E402 - stdlib only; huggingface_hub is not imported yet

HUB_PORT = free_port()
_HF_HOME = tempfile.mkdtemp(prefix="mistudio-test-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ.update(
    {
        "HF_ENDPOINT": f"http://127.0.0.1:{HUB_PORT}",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": "3",
        "HF_HUB_DOWNLOAD_TIMEOUT": "10",
        # No login token and no default cache of the user's leaks in: HF_HOME is a throwaway directory.
        "HF_HOME": _HF_HOME,
    }
)
for _name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402

from mistudio_jupyter.core.service import ModelManager  # noqa: E402
from mistudio_jupyter.core.settings import Settings  # noqa: E402
from tests import postgres  # noqa: E402
from tests.hubserver import HubServer, RepoSpec, build_fixtures, default_root  # noqa: E402
from tests.prerequisites import missing  # noqa: E402

BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "each_backend(*names): run the test on a SQLite and on a PostgreSQL catalog (or on those named)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("each_backend")
    if marker and "catalog_backend" in metafunc.fixturenames:
        metafunc.parametrize("catalog_backend", marker.args or BACKENDS, indirect=True)


@pytest.fixture
def catalog_backend(request: pytest.FixtureRequest) -> str:
    """The catalog's database: SQLite, or each of SQLite and PostgreSQL in tests marked `each_backend`."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresCluster]:
    """A PostgreSQL server of this test session, started on first use."""
    reason = postgres.missing_reason()
    if reason:
        missing(reason)
    with postgres.PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def db_url(catalog_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A catalog URL of this test's own database (a new SQLite file, or a new migrated PostgreSQL database)."""
    if catalog_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        return
    with request.getfixturevalue("postgres_server").database() as url:
        yield url


@pytest.fixture(scope="session")
def fixture_repos() -> dict[str, RepoSpec]:
    """Every test repository by id (built on first use, cached on disk under `default_root()`)."""
    return build_fixtures(default_root())


@pytest.fixture(scope="session")
def _hub_server(fixture_repos: dict[str, RepoSpec]) -> Iterator[HubServer]:
    with HubServer(default_root(), port=HUB_PORT, repos=fixture_repos) as server:
        yield server


@pytest.fixture
def hub(_hub_server: HubServer) -> Iterator[HubServer]:
    """The running test Hub (at `HF_ENDPOINT`), with an empty log; faults are reset after the test."""
    _hub_server.faults.reset()
    _hub_server.clear_log()
    yield _hub_server
    _hub_server.faults.reset()
    _hub_server.clear_log()


@pytest.fixture
def hf_cache(tmp_path: Path) -> Path:
    """An empty Hugging Face hub cache directory for this test."""
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture
def no_download_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The architecture summary imports torch in every download worker; only tests that check it pay."""
    monkeypatch.setenv("MISTUDIO_DOWNLOAD_SUMMARY", "0")


@pytest.fixture
def manager(settings: Settings) -> Iterator[ModelManager]:
    """A ModelManager over `settings`; downloads still running at the end are cancelled."""
    manager = ModelManager(settings)
    yield manager
    for record in manager.list():
        if record.status in ("pending", "downloading"):
            manager.cancel(record.id)
    manager.close()


@pytest.fixture
def settings(hub: HubServer, hf_cache: Path, db_url: str, tmp_path: Path) -> Settings:
    """Settings over `hf_cache`, a fresh catalog and the test Hub."""
    return Settings.from_env(
        cache_dir=hf_cache,
        db_url=db_url,
        hub_endpoint=hub.url,
        runtime_dir=tmp_path / "runtime",
    )


@pytest.fixture(scope="session")
def demo_hub_url() -> Iterator[str]:
    """`make demo`'s Hub, started as the Makefile starts it (`python -m tests.hubserver ROOT --port N`)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.hubserver", str(default_root()), "--port", "0"],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        process.terminate()
        process.wait(timeout=10)
