"""Helpers shared by the browser tests: a JupyterLab on loopback, Chromium's settings, running a cell."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.hubserver import HubServer
from tests.ports import free_port

if TYPE_CHECKING:  # Playwright is imported where it runs, so that tests/browser/conftest.py can check for it
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]
LABEXTENSION = REPO / "mistudio_jupyter" / "labextension"
WIDGET_BUNDLES = REPO / "mistudio_jupyter" / "widgets" / "static"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("MISTUDIO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

NOT_RUN = re.compile(r"^\[\s*\]:$")


def run_cell(page: Page, cell: Locator) -> Locator:
    """Run `cell` and return its output area. JupyterLab drops a run sent while a new notebook's kernel
    is still settling (it may even be replaced once), so a run that never starts is sent again."""
    from playwright.sync_api import expect

    for _ in range(5):
        page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=60_000)
        cell.locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")
        try:
            expect(cell.locator(".jp-InputPrompt")).not_to_have_text(NOT_RUN, timeout=5_000)
            return cell.locator(".jp-OutputArea-output")
        except AssertionError:
            continue
    raise AssertionError("the cell never ran")


class Lab:
    """A running JupyterLab: its URL (with the token) and the catalog/cache it shares with its kernels."""

    def __init__(self, url: str, token: str, env: dict[str, str], root: Path) -> None:
        self.url, self.token, self.env, self.root = url, token, env, root

    def page_url(self, path: str = "lab") -> str:
        return f"{self.url}{path}?token={self.token}"


@contextmanager
def running_lab(
    tmp: Path, hub: HubServer, *, with_extension: bool = True, environment: Mapping[str, str] | None = None
) -> Iterator[Lab]:
    """JupyterLab with this checkout's built extension, isolated config and data, and (unless
    `with_extension` is false) the mistudio server extension over a fresh cache and catalog, or over what
    `environment` sets (a team store's, say)."""
    data, config, root = tmp / "data", tmp / "config", tmp / "root"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / "mistudio-jupyter").symlink_to(LABEXTENSION, target_is_directory=True)
    (config / "labconfig").mkdir(parents=True)
    root.mkdir()
    # No news prompt over the page.
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"mistudio_jupyter": with_extension}}})
    )
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_PATH": str(data),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        # The server and its kernels read the same cache and catalog.
        "MISTUDIO_CACHE_DIR": str(tmp / "cache"),
        "MISTUDIO_DB_URL": f"sqlite:///{tmp / 'catalog.sqlite'}",
        "HF_ENDPOINT": hub.url,
        **(environment or {}),
    }
    log = (tmp / "lab.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start:\n{(tmp / 'lab.log').read_text()}") from None
                time.sleep(0.25)
        yield Lab(url, token, env, root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp / "lab.log", ARTIFACTS / f"lab-{tmp.name}.log")
