"""The browser tests need Playwright, Chromium and the built front end. Without them a test module is not
imported at all: it becomes one test that fails under CI and is skipped elsewhere, saying what to install."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.jupyterlab import CHROMIUM, CHROMIUM_ARGS, LABEXTENSION, WIDGET_BUNDLES
from tests.prerequisites import missing


def missing_prerequisites() -> list[str]:
    """What this machine lacks for the browser tests, each with how to get it."""
    problems = []
    if importlib.util.find_spec("playwright") is None:
        problems.append("Playwright (`pip install -e '.[test]'`)")
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"Chromium at {CHROMIUM} (`make browser-deps`, or set MISTUDIO_CHROMIUM)")
    if not (LABEXTENSION / "package.json").exists():
        problems.append(f"the built lab extension in {LABEXTENSION} (`npm run build`, or `pip install -e .`)")
    if not any(WIDGET_BUNDLES.glob("*.js")):
        problems.append(f"the built widget bundles in {WIDGET_BUNDLES} (`npm run build:widgets`)")
    return problems


class MissingPrerequisites(pytest.Item):
    """Stands in for a browser test module that cannot run here."""

    def __init__(self, *, problems: list[str], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.problems = problems

    def runtest(self) -> None:
        missing("; ".join(self.problems))

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"{self.path.name}: browser prerequisites"


class UnrunnableModule(pytest.File):
    def __init__(self, *, problems: list[str], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.problems = problems

    def collect(self) -> Iterator[MissingPrerequisites]:
        yield MissingPrerequisites.from_parent(self, name="prerequisites", problems=self.problems)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    problems = missing_prerequisites()
    return UnrunnableModule.from_parent(parent, path=module_path, problems=problems) if problems else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium through Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
