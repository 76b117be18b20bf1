"""The notebook widgets in a real JupyterLab, driven by a real Chromium through Playwright.

JupyterLab runs on loopback with a kernel over the test Hub; the test runs `%mistudio download` on a
throttled repo and watches the progress bar advance to ready, then opens `%mistudio arch`, ticks three
hooks and reads `viewer.selected` back from the kernel; last, `%mistudio open` opens the model page in a
JupyterLab tab. Screenshots go to test-artifacts/.

Needs Playwright, Chromium at /usr/bin/chromium (Debian's `chromium` package) and the built widgets: without
them the test fails under CI and is skipped elsewhere (conftest.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from tests.browser.jupyterlab import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, run_cell, running_lab
from tests.hubserver import HubServer

PICKED = ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.1.hook_resid_post"]
CELLS = [
    "%load_ext mistudio_jupyter",
    "progress = %mistudio download tiny/gpt2\nprogress",
    "viewer = %mistudio arch tiny/gpt2\nviewer",
    "print('SELECTED', viewer.selected)",
    "%mistudio open tiny/gpt2",
]

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def lab(hub: HubServer, tmp_path: Path) -> Iterator[str]:
    """A JupyterLab on loopback over a notebook of CELLS; yields the notebook's URL."""
    with running_lab(tmp_path, hub) as lab:
        nbformat.write(
            nbformat.v4.new_notebook(
                cells=[nbformat.v4.new_code_cell(c) for c in CELLS],
                metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
            ),
            lab.root / "widgets.ipynb",
        )
        yield lab.page_url("lab/tree/widgets.ipynb")


def test_download_progress_and_hook_picker_in_jupyterlab(lab: str, hub) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    hub.faults.set(path="model.safetensors", throttle_bps=100_000)  # ~6 s for tiny/gpt2's weights
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        try:
            page.goto(lab)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_attached(timeout=90_000)
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            expect(cells).to_have_count(len(CELLS))

            news = page.get_by_role("alert").get_by_role("button", name="No")
            if news.count():
                news.click()

            def run(index: int) -> None:
                run_cell(page, cells.nth(index))
                expect(cells.nth(index).locator(".jp-InputPrompt")).to_have_text(
                    re.compile(r"\[\d+\]:"), timeout=60_000
                )

            run(0)
            run(1)
            bar = cells.nth(1).locator(".mistudio [role=progressbar]")
            expect(bar).to_be_visible(timeout=30_000)
            seen: list[int] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                value = int(bar.get_attribute("aria-valuenow") or 0)
                if not seen or value != seen[-1]:
                    seen.append(value)
                    if len(seen) == 3:
                        page.screenshot(path=str(ARTIFACTS / "notebook-download-progress.png"))
                if value == 100 and cells.nth(1).get_by_text("ready", exact=True).count():
                    break
                time.sleep(0.1)
            assert seen[-1] == 100, seen
            assert len([v for v in seen if 0 < v < 100]) >= 3, f"the bar advanced in steps: {seen}"
            assert seen == sorted(seen), seen
            expect(cells.nth(1).get_by_text("ready", exact=True)).to_be_visible()

            run(2)
            viewer = cells.nth(2).locator(".mistudio")
            expect(viewer.locator("input[data-hook]").first).to_be_visible(timeout=60_000)
            for name in PICKED:
                viewer.locator(f"input[data-hook='{name}']").click()
            expect(viewer.get_by_text(re.compile(r"^3 selected"))).to_be_visible()
            viewer.locator(f"input[data-hook='{PICKED[-1]}']").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "notebook-hook-picker.png"))

            run(3)
            output = cells.nth(3).locator(".jp-OutputArea-output")
            expect(output).to_contain_text("SELECTED", timeout=30_000)
            assert output.inner_text().strip() == f"SELECTED {PICKED}"
            cells.nth(2).locator("[aria-label=Memory]").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "notebook.png"))

            run(4)
            tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current", has_text="tiny/gpt2")
            expect(tab).to_be_visible(timeout=30_000)
            expect(page.locator(".mistudio-lab-page .mistudio-mem__row").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "notebook-open.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "notebook-failure.png"))
            (ARTIFACTS / "notebook-console.log").write_text("\n".join(console))
            raise
        finally:
            browser.close()
