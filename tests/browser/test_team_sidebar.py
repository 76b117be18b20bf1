"""Users' JupyterLabs over the team store: the sidebar lists the store's models, names who asked and offers
only the actions the user's scopes allow, and a download one user starts from their sidebar shows in
another's sidebar and kernel as it runs."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Browser, expect

from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from tests.browser.jupyterlab import running_lab
from tests.browser.test_sidebar import card, open_lab, open_sidebar, progress_of, shot, start_download
from tests.hubserver import HubServer, WanProfile
from tests.polling import wait_for
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
        sidebar = open_sidebar(page)
        row = card(sidebar, "tiny/gpt2")
        expect(row.locator(".mistudio-badge")).to_have_text("ready")
        expect(row.locator(".mistudio-item__requester")).to_have_text(" · by bob")
        expect(row.locator("button")).to_have_text(["Open"])  # carol may read, not delete
        expect(sidebar.get_by_role("button", name="Download…")).to_be_hidden()
        meta = row.locator(".mistudio-item__meta")
        assert meta.evaluate("(node) => node.scrollWidth <= node.clientWidth"), meta.text_content()
        shot(page, "team-sidebar")


def test_a_download_started_in_one_users_sidebar_runs_in_anothers_sidebar_and_kernel(
    browser: Browser,
    team_hub: TeamHub,  # noqa: F811 (the fixture imported above)
    _hub_server: HubServer,
    tmp_path: Path,
) -> None:
    bob_env, carol_env = (user_environment(team_hub, user, tmp_path / user) for user in ("bob", "carol"))
    carol = ModelManager(Settings.from_env(carol_env))  # carol's kernel
    with (
        running_lab(tmp_path / "bob-lab", _hub_server, environment=bob_env) as bob_lab,
        running_lab(tmp_path / "carol-lab", _hub_server, environment=carol_env) as carol_lab,
        open_lab(browser, bob_lab, "team-bob") as bob_page,
        open_lab(browser, carol_lab, "team-carol") as carol_page,
    ):
        carol_sidebar = open_sidebar(carol_page)
        _hub_server.faults.wan = WanProfile(per_conn_bps=250_000, rtt_ms=20)  # a CDN's path: seconds to watch
        try:
            start_download(open_sidebar(bob_page), "tiny/big")
            clicked = time.monotonic()
            row = card(carol_sidebar, "tiny/big")
            expect(row.locator(".mistudio-badge")).to_have_text("downloading")
            print(f"\ncarol's sidebar showed bob's download {time.monotonic() - clicked:.2f} s after his click")
            expect(row.locator(".mistudio-item__requester")).to_have_text(" · by bob")
            wait_for(lambda: 0 < progress_of(row) < 100, 60, 0.1, "progress in carol's sidebar")
            seen = wait_for(
                lambda: next((r for r in carol.list() if r.repo_id == "tiny/big" and (r.bytes_done or 0) > 0), None),
                30,
                0.1,
                "progress in carol's kernel",
            )
            assert seen.status == "downloading" and seen.requested_by == "bob"
            shot(carol_page, "team-carol-watching")
        finally:
            _hub_server.faults.reset()
        expect(row.locator(".mistudio-badge")).to_have_text("ready", timeout=120_000)
        assert wait_for(lambda: carol.get(seen.id).status == "ready", 30, 0.1, "ready in carol's kernel")
    carol.close()
