"""Helpers shared by the browser tests."""
from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

NOT_RUN = re.compile(r"^\[\s*\]:$")


def run_cell(page: Page, cell: Locator) -> Locator:
    """Run `cell` and return its output area. JupyterLab drops a run sent while a new notebook's kernel
    is still settling (it may even be replaced once), so a run that never starts is sent again."""
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
