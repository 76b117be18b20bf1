"""The model page in a real JupyterLab (Chromium through Playwright): opened from the sidebar's list at its
default width, every memory figure fully visible in the page at full width and at the sidebar's width, in
the light and the dark theme, hooks picked and inserted into a notebook, and the tab restored with the
layout. Screenshots go to test-artifacts/sidebar/ (docs/sidebar.png and docs/modelpage-*.png are some of
them, picked by hand)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.jupyterlab import Lab, run_cell, running_lab
from tests.browser.test_sidebar import open_lab, run_from_palette, shot, workspace
from tests.hubserver import HubServer

pytestmark = pytest.mark.timeout(300)

# Every element that states a number of the memory chart or the parameters chart.
FIGURES = (
    ".mistudio-mem__total, .mistudio-verdict, .mistudio-mem__label, .mistudio-legend__item, "
    ".mistudio-kinds li, .mistudio-blocks__max, .mistudio-blocks__axis > span"
)

# The figures under `root` that are cut off: out of the page's box (or out of the window), or clipped
# inside their own box (text wider than the element, as with an ellipsis).
CLIPPED = """([root, selector]) => {
  const page = root.getBoundingClientRect();
  const right = Math.min(page.right, document.documentElement.clientWidth);
  return [...root.querySelectorAll(selector)].flatMap((node) => {
    const box = node.getBoundingClientRect();
    const inside = box.width > 0 && box.left >= page.left - 0.5 && box.right <= right + 0.5;
    const whole = node.scrollWidth <= node.clientWidth + 1 || getComputedStyle(node).display === "inline";
    return inside && whole ? [] : [`${node.className}: ${node.textContent} at ${box.left}..${box.right}`];
  });
}"""


@pytest.fixture
def lab(tmp_path: Path, hub: HubServer) -> Iterator[Lab]:
    with running_lab(tmp_path, hub) as lab:
        yield lab


def api(lab: Lab, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the server extension's REST API with the lab's token."""
    request = urllib.request.Request(
        f"{lab.url}mistudio/api/v1/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def downloaded(lab: Lab, repo_id: str) -> dict[str, Any]:
    """Add `repo_id` to the catalog and download it; returns the record once ready."""
    record = api(lab, "models", {"repo_id": repo_id})
    api(lab, f"models/{record['id']}/download", {})
    deadline = time.monotonic() + 60
    while (record := api(lab, f"models/{record['id']}"))["status"] != "ready":
        assert time.monotonic() < deadline, record
        time.sleep(0.2)
    return record


def assert_nothing_clips(page: Locator) -> None:
    expect(page.locator(".mistudio-mem__row").first).to_be_visible()
    problems = page.evaluate(f"(root) => ({CLIPPED})([root, {json.dumps(FIGURES)}])")
    assert problems == [], problems
    assert page.evaluate("(root) => root.scrollWidth <= root.clientWidth + 1"), "the page scrolls sideways"


# Hook rows whose name runs over the module column.
OVERLAPS = """(root) => [...root.querySelectorAll(".mistudio-hook")].flatMap((row) => {
  const name = row.querySelector(".mistudio-hook__name").getBoundingClientRect();
  const module = row.querySelector(".mistudio-hook__module").getBoundingClientRect();
  const apart = name.right <= module.left + 0.5 || name.bottom <= module.top + 0.5;
  return apart ? [] : [row.textContent];
})"""


def laid_out(locator: Locator, done: Callable[[float], bool]) -> float:
    """The width of `locator` once `done(width)`, after a resize of the window."""
    deadline = time.monotonic() + 10
    while not done(width := locator.evaluate("(node) => node.getBoundingClientRect().width")):
        assert time.monotonic() < deadline, f"still {width} px wide"
        time.sleep(0.1)
    return width


def set_theme(page: Page, name: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{name}$")).click()
    expect(page.locator("body")).to_have_attribute("data-jp-theme-name", name, timeout=30_000)
    page.wait_for_timeout(500)  # the theme's stylesheet applies after the attribute changes


def track_colour(page: Locator) -> str:
    return page.locator(".mistudio-mem__track").first.evaluate("(node) => getComputedStyle(node).fill")


def open_page(page: Page, sidebar: Locator, name: str, entry_id: str) -> Locator:
    """Open the model page of `name` from its row in the sidebar; returns the page, once loaded."""
    row = sidebar.locator(".mistudio-item", has=page.get_by_role("heading", name=name, exact=True))
    row.get_by_role("button", name="Open").click()
    model_page = page.locator(f"#mistudio-model-{entry_id} .mistudio-lab-page")
    expect(model_page.get_by_role("heading", name=name)).to_be_visible()
    expect(model_page.locator(".mistudio-mem__row")).to_have_count(6, timeout=60_000)
    expect(model_page.locator("input[data-hook]").first).to_be_visible(timeout=60_000)
    return model_page


def toggle_sidebar(page: Page) -> None:
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="mistudio-sidebar"]').click()


def test_model_page(browser: Browser, lab: Lab, hub: HubServer) -> None:
    gpt2 = downloaded(lab, "tiny/gpt2")
    downloaded(lab, "tiny/llama")
    llama3 = api(lab, "models", {"repo_id": "meta-llama/Meta-Llama-3-8B"})  # 16 GB: added, not downloaded
    with open_lab(browser, lab, "model-page") as page:
        # The sidebar at its default width: a list whose rows are all in view, their figures whole.
        toggle_sidebar(page)
        sidebar = page.locator("#mistudio-sidebar")
        rows = sidebar.locator(".mistudio-item")
        expect(rows).to_have_count(3)
        body = sidebar.locator(".mistudio-lab-sidebar__body")
        assert body.evaluate("(node) => node.scrollHeight <= node.clientHeight"), "the list needs scrolling"
        for meta in rows.locator(".mistudio-item__meta").all():
            assert meta.evaluate("(node) => node.scrollWidth <= node.clientWidth"), meta.text_content()
        expect(sidebar.locator("details.mistudio-filters")).not_to_have_attribute("open", "")
        width = sidebar.evaluate("(node) => node.getBoundingClientRect().width")
        shot(page, "10-list")

        # The model page of an 8B model, from the row's Open: every figure whole at full width.
        model_page = open_page(page, sidebar, "meta-llama/Meta-Llama-3-8B", llama3["id"])
        expect(model_page.get_by_role("img").first).to_be_visible()
        assert_nothing_clips(model_page)
        shot(page, "11-model-page-light")
        light = track_colour(model_page)

        # The same page as narrow as the sidebar: the window shrunk until the main area is that wide.
        toggle_sidebar(page)  # folds it
        main = page.locator("#jp-main-dock-panel").evaluate("(node) => node.getBoundingClientRect().width")
        page.set_viewport_size({"width": int(1400 - (main - width)), "height": 900})
        narrow = laid_out(model_page, lambda w: w < 2 * width)  # JupyterLab lays out after the resize event
        assert abs(narrow - width) <= 40, (narrow, width)
        assert_nothing_clips(model_page)
        assert model_page.evaluate(OVERLAPS) == []
        shot(page, "12-model-page-narrow")
        model_page.locator(".mistudio-hook").first.scroll_into_view_if_needed()
        shot(page, "12-model-page-narrow-hooks")
        page.set_viewport_size({"width": 1400, "height": 900})
        laid_out(model_page, lambda w: w > 2 * width)
        toggle_sidebar(page)

        # Dark and back: the chart follows the theme's colours, and nothing clips in either.
        set_theme(page, "JupyterLab Dark")
        assert_nothing_clips(model_page)
        assert track_colour(model_page) != light
        shot(page, "13-model-page-dark")
        set_theme(page, "JupyterLab Light")
        assert track_colour(model_page) == light

        # A new context re-estimates: the KV cache appears in the bars.
        fp32 = model_page.locator(".mistudio-mem__row[data-option=fp32] svg")
        expect(fp32).not_to_have_attribute("aria-label", re.compile("kv cache"))
        model_page.get_by_label("Context (tokens of KV cache)").fill("8192")
        # 32 layers × (K, V) × 8 KV heads × 128 × 8192 tokens × 4 bytes = 2.15 GB
        expect(fp32).to_have_attribute("aria-label", re.compile(r"kv cache 2\.15 GB"), timeout=30_000)
        expect(model_page.locator(".mistudio-mem__row[data-option=fp32] [data-segment=kv]")).to_be_attached()

        # Pick hooks of a downloaded model and insert them into a new notebook, whose cell runs.
        model_page = open_page(page, sidebar, "tiny/gpt2", gpt2["id"])
        picker = model_page.get_by_role("region", name="Hook picker")
        names = [picker.locator("input[data-hook]").nth(i).get_attribute("data-hook") for i in (1, 2, 3)]
        for name in names:
            picker.locator(f'input[data-hook="{name}"]').check()
        expect(model_page.get_by_text(re.compile(r"^3 selected"))).to_be_visible()
        model_page.get_by_role("button", name="Insert into notebook").click()
        cell = page.locator(".jp-Notebook .jp-CodeCell", has_text="capture(model, hooks)")
        for name in names:
            expect(cell.locator(".cm-content")).to_contain_text(name)
        output = run_cell(page, cell)
        expect(output.first).to_contain_text(names[0], timeout=120_000)
        shot(page, "14-inserted")

        # The tabs come back with the layout; the palette opens any model.
        deadline = time.monotonic() + 30
        while f"mistudio-model:{gpt2['id']}" not in workspace(lab):
            assert time.monotonic() < deadline, "the layout with the model page was never saved"
            time.sleep(0.5)
        page.reload()
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="tiny/gpt2")).to_be_visible()
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="Meta-Llama-3-8B")).to_be_visible()
        run_from_palette(page, "miStudio: open model…")
        page.locator(".jp-Dialog select").select_option(label="tiny/llama (ready)")
        page.locator(".jp-Dialog").get_by_role("button", name="OK").click()
        expect(
            page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current", has_text="tiny/llama")
        ).to_be_visible()
