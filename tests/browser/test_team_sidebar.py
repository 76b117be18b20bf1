"""A user's JupyterLab over the team store: the sidebar lists the store's models and names who asked."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from tests.browser.jupyterlab import running_lab
from tests.browser.test_sidebar import card, open_lab, open_sidebar, shot
from tests.hubserver import HubServer
from tests.team.conftest import (
    TeamHub,
    team_hub,  # noqa: F401 (the fixture)
)
from tests.team.test_users import user_environment


def test_the_sidebar_names_who_asked_for_each_model(
    browser: Browser,
    team_hub: TeamHub,  # noqa: F811 (the fixture imported above)
    _hub_server: HubServer,
    tmp_path: Path,
) -> None:
    bob = ModelManager(Settings.from_env(user_environment(team_hub, "bob", tmp_path / "bob")))
    try:
        bob.download("tiny/gpt2").wait(timeout=120)
    finally:
        bob.close()
    carol = user_environment(team_hub, "carol", tmp_path / "carol")
    with running_lab(tmp_path / "lab", _hub_server, environment=carol) as lab, open_lab(browser, lab, "team") as page:
        row = card(open_sidebar(page), "tiny/gpt2")
        expect(row.locator(".mistudio-badge")).to_have_text("ready")
        expect(row.locator(".mistudio-item__requester")).to_have_text(" · by bob")
        meta = row.locator(".mistudio-item__meta")
        assert meta.evaluate("(node) => node.scrollWidth <= node.clientWidth"), meta.text_content()
        shot(page, "team-sidebar")
