"""The JupyterLab sidebar in a real browser: JupyterLab on loopback with the server extension over the
test Hub, Chromium driven by Playwright. Screenshots go to test-artifacts/sidebar/."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser import jupyterlab
from tests.browser.jupyterlab import Lab, run_cell, running_lab
from tests.hubserver import HubServer

ARTIFACTS = jupyterlab.ARTIFACTS / "sidebar"
PROGRESS_BPS = 100_000  # tiny/gpt2 (~600 kB) then takes several seconds: the bar visibly advances

pytestmark = pytest.mark.timeout(300)  # without Playwright, Chromium or a built extension: see conftest.py


@pytest.fixture
def lab(tmp_path: Path, hub: HubServer) -> Iterator[Lab]:
    with running_lab(tmp_path, hub) as lab:
        yield lab


@contextmanager
def open_lab(browser: Browser, lab: Lab, name: str) -> Iterator[Page]:
    """A page on JupyterLab; its last state is saved as `{name}-last.png`, whether the test passed or not."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)
    try:
        page.goto(lab.page_url())
        page.locator("#jp-main-dock-panel").wait_for()
        yield page
    finally:
        shot(page, f"{name}-last")
        page.close()


def open_sidebar(page: Page, width: int | None = None) -> Locator:
    """Open the miStudio sidebar, at JupyterLab's default width or widened to `width` pixels by dragging
    its split handle."""
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="mistudio-sidebar"]').click()
    sidebar = page.locator("#mistudio-sidebar")
    expect(sidebar).to_be_visible()
    if width is None:
        return sidebar
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    assert handle is not None
    y = handle["y"] + handle["height"] / 2
    page.mouse.move(handle["x"] + handle["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(width, y, steps=5)
    page.mouse.up()
    return sidebar


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def card(sidebar: Locator, name: str) -> Locator:
    """The row of model `name` in the sidebar's list."""
    return sidebar.locator(".mistudio-item[data-id]", has=sidebar.page.get_by_role("heading", name=name, exact=True))


PROGRESS_IN_CARD = """(card) => {
    const bar = card.querySelector("[role=progressbar]");
    const stats = card.querySelector(".mistudio-progress__stats");
    if (!bar || !stats) return null;
    const value = Number(bar.getAttribute("aria-valuenow") || 0);
    return { value, stats: stats.textContent, statsFit: stats.scrollWidth <= stats.clientWidth };
}"""


def progress_of(locator: Locator) -> int:
    return int(locator.get_by_role("progressbar").get_attribute("aria-valuenow") or 0)


def start_download(sidebar: Locator, repo_id: str) -> None:
    """Open the download form (a main-area tab), preview `repo_id` and start it with the default option."""
    form = sidebar.page.get_by_role("form", name="Download a model")
    if not form.is_visible():
        sidebar.get_by_role("button", name="Download…").click()
    form.get_by_label("Hugging Face repo id").fill(repo_id)
    expect(form.get_by_role("region", name=f"Preview of {repo_id}")).to_be_visible(
        timeout=60_000
    )  # the first imports torch
    form.get_by_role("button", name="Start download").click()


def workspace(lab: Lab) -> str:
    """The saved default workspace (the layout JupyterLab restores), as text."""
    with urllib.request.urlopen(f"{lab.url}lab/api/workspaces/default?token={lab.token}", timeout=5) as response:
        return response.read().decode()


def run_in_notebook(page: Page, code: str) -> Locator:
    """Type `code` into the active cell of the open notebook, run it, and return its output area."""
    page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content").click()
    page.keyboard.insert_text(code)
    return run_cell(page, page.locator(".jp-Notebook .jp-CodeCell", has_text=code.splitlines()[0]))


def test_sidebar_flow(browser: Browser, lab: Lab, hub: HubServer) -> None:
    with open_lab(browser, lab, "flow") as page:
        sidebar = open_sidebar(page)
        expect(sidebar.get_by_role("heading", name="Models")).to_be_visible()
        expect(sidebar).to_contain_text("No models yet")
        shot(page, "01-empty")

        # Preview, then a throttled download whose bar advances to ready.
        hub.faults.set(throttle_bps=PROGRESS_BPS)
        start_download(sidebar, "tiny/gpt2")
        shot(page, "02-preview")
        gpt2 = card(sidebar, "tiny/gpt2")
        expect(gpt2).to_be_visible()
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "ready" not in (gpt2.locator(".mistudio-badge").text_content() or ""):
            bar = gpt2.evaluate(PROGRESS_IN_CARD)  # read at once: the bar goes when the download is ready
            if bar is not None:
                seen.append(bar["value"])
                assert bar["statsFit"], bar["stats"]
                if len(set(seen)) == 2:
                    shot(page, "03-downloading")
            time.sleep(0.2)
        expect(gpt2.locator(".mistudio-badge")).to_have_text("ready")
        assert len({v for v in seen if 0 < v < 100}) >= 2, f"the bar did not advance: {seen}"
        assert seen == sorted(seen), seen

        # Start another (large) download and cancel it.
        hub.faults.set(throttle_bps=200_000)
        start_download(sidebar, "tiny/big")
        big = card(sidebar, "tiny/big")
        expect(big.locator(".mistudio-badge")).to_have_text("downloading")
        big.get_by_role("button", name="Cancel").click()
        expect(big.locator(".mistudio-badge")).to_have_text("cancelled")
        hub.faults.reset()
        page.get_by_role("form", name="Download a model").get_by_role("button", name="Cancel", exact=True).click()
        expect(page.get_by_role("form", name="Download a model")).to_have_count(0)  # its tab closed
        shot(page, "04-cancelled")

        # Delete a model: the row asks, stating the bytes to be freed.
        big.get_by_role("button", name="Delete").click()
        confirm = big.get_by_role("group", name="Confirm delete")
        expect(confirm).to_contain_text("free up to")
        confirm.get_by_role("button", name="Delete").click()
        expect(big).to_have_count(0)
        expect(card(sidebar, "tiny/gpt2")).to_be_visible()
        shot(page, "05-deleted")


def test_download_started_in_a_notebook_appears(browser: Browser, lab: Lab, hub: HubServer) -> None:
    with open_lab(browser, lab, "from-notebook") as page:
        sidebar = open_sidebar(page)
        expect(sidebar).to_contain_text("No models yet")
        page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
        page.locator(".jp-Notebook .jp-Cell.jp-mod-active").wait_for()
        hub.faults.set(throttle_bps=PROGRESS_BPS)
        output = run_in_notebook(
            page,
            "from mistudio_jupyter import ModelManager\n"
            "handle = ModelManager().download('tiny/pythia')\n"
            "handle.model_id",
        )
        expect(output).to_be_visible(timeout=60_000)
        pythia = card(sidebar, "tiny/pythia")
        expect(pythia).to_be_visible()
        expect(pythia.locator(".mistudio-badge")).to_have_text("ready", timeout=60_000)
        shot(page, "08-from-notebook")

        # Restored across reloads, once JupyterLab has saved the layout; and in the command palette.
        deadline = time.monotonic() + 30
        while "mistudio-sidebar" not in workspace(lab):
            assert time.monotonic() < deadline, "the layout with the sidebar was never saved"
            time.sleep(0.5)
        page.reload()
        expect(card(page.locator("#mistudio-sidebar"), "tiny/pythia")).to_be_visible()
        find_in_palette(page, "Show miStudio Models")


def open_command_palette(page: Page) -> None:
    """Ctrl+Shift+C, sent again if the page just reloaded and had not yet bound its shortcuts."""
    palette = page.locator(".lm-CommandPalette-input")
    for _ in range(5):
        page.keyboard.press("Control+Shift+C")
        try:
            expect(palette).to_be_focused(timeout=3_000)
            return
        except AssertionError:
            continue
    raise AssertionError("the command palette never opened")


def find_in_palette(page: Page, label: str) -> Locator:
    """The command `label`, visible in the command palette; looked for again if the palette closed
    first (a notebook restored with the layout takes the focus when its kernel is ready)."""
    item = page.locator(".lm-CommandPalette-item", has_text=label)
    for _ in range(5):
        open_command_palette(page)
        try:
            page.locator(".lm-CommandPalette-input").fill(label.rstrip("…"), timeout=5_000)
            expect(item).to_be_visible(timeout=5_000)
            return item
        except (AssertionError, PlaywrightTimeout):
            page.keyboard.press("Escape")
    raise AssertionError(f"{label!r} is not in the command palette")


def run_from_palette(page: Page, label: str) -> None:
    """Run the command `label` from the command palette; found again if the palette closed between
    finding the command and clicking it."""
    for _ in range(5):
        try:
            find_in_palette(page, label).click(timeout=5_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"{label!r} could not be clicked in the command palette")


def test_missing_server_extension_is_explained(browser: Browser, tmp_path: Path, hub: HubServer) -> None:
    with running_lab(tmp_path, hub, with_extension=False) as lab:
        with open_lab(browser, lab, "no-server-extension") as page:
            sidebar = open_sidebar(page)
            notice = sidebar.get_by_role("alert")
            expect(notice).to_contain_text("miStudio is unavailable")
            expect(notice).to_contain_text("pip install mistudio-jupyter")
            expect(notice).to_contain_text("jupyter server extension enable mistudio_jupyter")
            shot(page, "09-no-server-extension")
