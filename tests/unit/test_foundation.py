"""Settings, errors, the package import and the CLI skeleton."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mistudio_jupyter.core.errors import ALL_ERRORS, Forbidden, InvalidArgument, StoreUnreachable, error_from
from mistudio_jupyter.core.service import ModelManager
from mistudio_jupyter.core.settings import Settings
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_settings_precedence_arguments_over_environment_over_defaults(tmp_path):
    env = {
        "MISTUDIO_CACHE_DIR": str(tmp_path / "env-cache"),
        "HF_ENDPOINT": "http://127.0.0.1:9/",
        "HF_TOKEN": "hf_env",
        "MISTUDIO_MAX_PARALLEL_DOWNLOADS": "3",
    }
    from_env = Settings.from_env(env)
    assert from_env.cache_dir == tmp_path / "env-cache"
    assert from_env.hub_endpoint == "http://127.0.0.1:9"
    assert from_env.max_parallel_downloads == 3
    assert "hf_env" not in repr(from_env)
    explicit = Settings.from_env(env, cache_dir=tmp_path / "arg", max_parallel_downloads=1, token="hf_arg")
    assert (explicit.cache_dir, explicit.max_parallel_downloads, explicit.token) == (tmp_path / "arg", 1, "hf_arg")


def test_settings_defaults_follow_huggingface_and_jupyter(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "JUPYTER_DATA_DIR": str(tmp_path / "jd")}
    settings = Settings.from_env(env)
    assert settings.cache_dir == tmp_path / "hf" / "hub"
    assert settings.db_url == f"sqlite:///{tmp_path / 'jd' / 'mistudio' / 'catalog.sqlite'}"
    assert settings.hub_endpoint == "https://huggingface.co"


@pytest.mark.parametrize("bad", [{"max_parallel_downloads": 0}, {"hub_endpoint": "ftp://x"}, {"colour": "red"}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(InvalidArgument):
        Settings.from_env({}, **bad)


def test_a_team_store_comes_from_the_environment_with_the_users_hub_token(tmp_path):
    env = {"MISTUDIO_STORE_URL": "http://hub:8000/services/mistudio/", "JUPYTERHUB_API_TOKEN": "hub-token"}
    settings = Settings.from_env(env)
    assert (settings.store_url, settings.store_token) == ("http://hub:8000/services/mistudio/", "hub-token")
    assert "hub-token" not in repr(settings)
    assert Settings.from_env({**env, "MISTUDIO_STORE_TOKEN": "own-token"}).store_token == "own-token"
    assert Settings.from_env({"JUPYTERHUB_API_TOKEN": "hub-token"}).store_url is None
    with pytest.raises(InvalidArgument, match="MISTUDIO_STORE_TOKEN"):
        Settings.from_env({"MISTUDIO_STORE_URL": env["MISTUDIO_STORE_URL"]})
    with pytest.raises(InvalidArgument, match="http"):
        Settings.from_env({**env, "MISTUDIO_STORE_URL": "hub:8000"})


def test_a_store_that_does_not_answer_or_is_not_a_store_is_a_clear_error(hub, tmp_path):
    for url in (f"http://127.0.0.1:{free_port()}/services/mistudio/", hub.url):
        settings = Settings.from_env({"MISTUDIO_STORE_URL": url, "MISTUDIO_STORE_TOKEN": "t", "HOME": str(tmp_path)})
        manager = ModelManager(settings)
        try:
            with pytest.raises(StoreUnreachable, match="team store"):
                manager.list()
        finally:
            manager.close()


def test_store_errors_become_the_same_domain_errors():
    assert isinstance(error_from("forbidden", "no"), Forbidden) and error_from("conflict", "busy").code == "conflict"
    unknown = error_from("unauthenticated", "who are you")
    assert (unknown.code, unknown.message) == ("unauthenticated", "who are you")


def test_error_codes_are_stable_and_unique():
    codes = [error.code for error in ALL_ERRORS]
    assert len(codes) == len(set(codes))
    for required in (
        "invalid_repo_id",
        "repo_not_found",
        "revision_not_found",
        "gated_login_required",
        "gated_not_approved",
        "invalid_token",
        "hub_unreachable",
        "insufficient_disk",
        "conflict",
        "not_found",
        "invalid_argument",
        "unsafe_repo",
    ):
        assert required in codes
    assert ALL_ERRORS[0]("boom").to_dict() == {"code": ALL_ERRORS[0].code, "message": "boom"}


def test_import_leaves_torch_and_transformers_out():
    code = "import sys, mistudio_jupyter; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def _cli(*args: str, tmp_path: Path, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MISTUDIO_DB_URL": f"sqlite:///{tmp_path / 'c.sqlite'}",
        "MISTUDIO_CACHE_DIR": str(tmp_path / "cache"),
    }
    return subprocess.run(
        [sys.executable, *python, "-m", "mistudio_jupyter", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_cli_version_and_empty_list(tmp_path):
    from mistudio_jupyter import __version__

    assert _cli("--version", tmp_path=tmp_path).stdout.strip() == f"mistudio-jupyter {__version__}"
    listed = _cli("list", "--json", tmp_path=tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_cli_errors_are_one_line_or_a_json_error(tmp_path):
    plain = _cli("list", "--sort", "nope", tmp_path=tmp_path)
    assert plain.returncode == 1
    assert plain.stderr.count("\n") == 1 and "cannot sort by 'nope'" in plain.stderr
    as_json = _cli("list", "--status", "bogus", "--json", tmp_path=tmp_path)
    assert as_json.returncode == 2
    assert json.loads(as_json.stderr)["error"]["code"] == "invalid_argument"
    assert "Traceback" not in plain.stderr + as_json.stderr


def test_the_schema_head_constant_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from mistudio_jupyter.core import migrations

    config = Config()
    config.set_main_option("script_location", str(migrations.HERE))
    assert ScriptDirectory.from_config(config).get_current_head() == migrations.HEAD


def test_cli_list_filters_and_counts(tmp_path):
    from mistudio_jupyter.core.catalog import Catalog

    catalog = Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    catalog.add("big/model", params=7_000_000_000, status="ready")
    catalog.add("small/model", params=70_000_000, status="ready")
    catalog.close()
    listed = _cli("list", "--min-params", "1B", "--json", tmp_path=tmp_path)
    assert [row["repo_id"] for row in json.loads(listed.stdout)] == ["big/model"]
    table = _cli("list", "--max-params", "100M", tmp_path=tmp_path)
    assert "small/model" in table.stdout and "big/model" not in table.stdout and "70M" in table.stdout
