"""The REST API over a real Jupyter server: catalog routes, validation, the error mapper."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
from openapi_spec_validator import validate as validate_openapi

from mistudio_jupyter.core import errors as core_errors
from mistudio_jupyter.core.settings import Settings
from mistudio_jupyter.server import MiStudio, handlers, openapi
from mistudio_jupyter.server.errors import STATUS_BY_CODE, error_response

from .conftest import API, Api

pytestmark = pytest.mark.each_backend

REPO = Path(__file__).resolve().parents[2]


# -- the extension and its contract ----------------------------------------------------------------


def test_openapi_document_is_valid_and_matches_the_routes() -> None:
    document = openapi.document()
    validate_openapi(document)
    methods = ("get", "post", "put", "delete")
    served = {handler.route: {m for m in methods if m in vars(handler)} for handler in handlers.HANDLERS}
    documented = {path: {m for m in item if m in methods} for path, item in document["paths"].items()}
    assert served == documented


def test_every_domain_error_has_a_status() -> None:
    for error in core_errors.ALL_ERRORS:
        status, body = error_response(error("boom"))
        assert status == STATUS_BY_CODE[error.code] and 400 <= status < 600
        assert body == {"error": {"code": error.code, "message": "boom"}}


async def test_extension_is_loaded(jp_serverapp: Any, mistudio: MiStudio) -> None:
    assert jp_serverapp.extension_manager.extensions["mistudio_jupyter"].enabled
    assert mistudio.settings["mistudio"] is mistudio
    configured = mistudio.manager.settings  # c.MiStudio.* reaches the core Settings
    assert (
        str(configured.cache_dir),
        configured.db_url,
        configured.hub_endpoint,
        configured.max_parallel_downloads,
    ) == (mistudio.cache_dir, mistudio.db_url, mistudio.hub_endpoint, 3)


def test_jupyter_config_auto_enables_the_extension(tmp_path: Path) -> None:
    # What installing the wheel does (pyproject's shared-data), into a throwaway config dir.
    with (REPO / "pyproject.toml").open("rb") as stream:
        shared = tomllib.load(stream)["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["jupyter-config/jupyter_server_config.d"] == "etc/jupyter/jupyter_server_config.d"
    config_dir = tmp_path / "config"
    shutil.copytree(REPO / "jupyter-config" / "jupyter_server_config.d", config_dir / "jupyter_server_config.d")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "PYTHONPATH": str(REPO),
        "NO_COLOR": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_server.extension.serverextension", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    assert re.search(
        r"mistudio_jupyter enabled\s+- Validating mistudio_jupyter...\s+mistudio_jupyter \S+ OK", output
    ), output


# -- catalog routes --------------------------------------------------------------------------------


async def test_create_get_and_list(api: Api) -> None:
    status, record = await api("POST", "/models", {"repo_id": "tiny/gpt2", "quantization": "bnb-4bit", "name": "small"})
    assert status == 200 and record["status"] == "pending" and record["quantization"] == "bnb-4bit"
    assert (await api("POST", "/models", {"repo_id": "tiny/gpt2", "quantization": "bnb-4bit"}))[1]["id"] == record["id"]
    await api("POST", "/models", {"repo_id": "tiny/llama", "revision": "main", "dtype": "bfloat16"})

    status, fetched = await api("GET", f"/models/{record['id']}")
    assert status == 200 and fetched == {**record, "leases": []}
    status, listing = await api("GET", "/models")
    assert status == 200 and len(listing["models"]) == 2
    _, filtered = await api("GET", "/models", params={"quantization": "bnb-4bit", "q": "small", "sort": "-name"})
    assert [m["id"] for m in filtered["models"]] == [record["id"]]
    _, page = await api("GET", "/models", params={"limit": 1, "offset": 1, "sort": "repo_id"})
    assert [m["repo_id"] for m in page["models"]] == ["tiny/llama"]


async def test_a_single_user_may_do_everything(api: Api) -> None:
    status, me = await api("GET", "/me")
    assert status == 200 and me["can"] == ["read", "download", "delete", "admin"] and me["name"]


async def test_create_takes_a_load_option_by_its_estimate_name(api: Api) -> None:
    status, record = await api("POST", "/models", {"repo_id": "tiny/gpt2", "option": "bf16"})
    assert status == 200 and (record["quantization"], record["dtype"]) == ("none", "bfloat16")
    same = await api("POST", "/models", {"repo_id": "tiny/gpt2", "quantization": "none", "dtype": "bfloat16"})
    assert same[1]["id"] == record["id"]
    status, body = await api("POST", "/models", {"repo_id": "tiny/gpt2", "option": "bf16", "quantization": "bnb-4bit"})
    assert status == 400 and body["error"]["code"] == "invalid_argument" and "option 'bf16'" in body["error"]["message"]


async def test_a_leased_entry_is_a_409_conflict_to_delete_unless_forced(api: Api) -> None:
    _, record = await api("POST", "/models", {"repo_id": "tiny/gpt2"})
    path = f"/models/{record['id']}"
    status, lease = await api("POST", f"{path}/leases", {"holder": "gpu1 pid 4242 kernel"})
    assert status == 201 and lease["holder"].endswith("@gpu1 pid 4242 kernel") and lease["model_id"] == record["id"]
    _, fetched = await api("GET", path)
    assert fetched["leases"] == [{"holder": lease["holder"], "created_at": lease["created_at"]}]

    status, refused = await api("DELETE", path)
    assert status == 409 and refused["error"]["code"] == "conflict"
    assert f"in use by {lease['holder']} since " in refused["error"]["message"]
    status, renewed = await api("PUT", f"/leases/{lease['id']}")
    assert status == 200 and renewed["heartbeat_at"] >= lease["heartbeat_at"]
    assert await api("DELETE", f"/leases/{lease['id']}") == (200, {"id": lease["id"]})
    assert (await api("DELETE", f"/leases/{lease['id']}"))[0] == 404
    assert (await api("PUT", f"/leases/{lease['id']}"))[0] == 404
    assert (await api("GET", path))[1]["leases"] == []

    _, lease = await api("POST", f"{path}/leases")
    assert (await api("DELETE", path, params={"force": "maybe"}))[0] == 400
    assert (await api("DELETE", path, params={"force": "true"}))[0] == 200  # a single user may force
    assert (await api("PUT", f"/leases/{lease['id']}"))[0] == 404
    status, missing = await api("POST", f"{path}/leases")
    assert status == 404 and missing["error"]["code"] == "not_found"


@pytest.fixture
def cached_snapshot(settings: Settings, hub: Any) -> str:
    """tiny/llama put in the cache by huggingface_hub before the server starts."""
    from huggingface_hub import snapshot_download

    return snapshot_download("tiny/llama", cache_dir=settings.cache_dir)


async def test_models_already_in_the_cache_are_adopted_when_the_server_starts(
    cached_snapshot: str, mistudio: MiStudio, api: Api
) -> None:
    for _ in range(200):  # the adoption runs in the background, off the event loop
        records = mistudio.manager.catalog.list()
        if records:
            break
        await asyncio.sleep(0.05)
    assert [(r.repo_id, r.status, r.file_path, r.family) for r in records] == [
        ("tiny/llama", "ready", cached_snapshot, "llama")
    ]
    status, listing = await api("GET", "/models")
    assert status == 200 and [m["id"] for m in listing["models"]] == [records[0].id]


async def test_a_repo_that_does_not_exist_is_not_added(api: Api) -> None:
    status, body = await api("POST", "/models", {"repo_id": "tiny/gtp2"})
    assert status == 404 and body["error"]["code"] == "repo_not_found"
    assert (await api("GET", "/models"))[1] == {"models": []}


async def test_a_gated_download_without_a_token_is_refused_before_it_starts(api: Api) -> None:
    status, record = await api("POST", "/models", {"repo_id": "tiny/gated"})
    assert status == 200 and record["status"] == "pending"
    status, body = await api("POST", f"/models/{record['id']}/download", {})
    assert status == 401 and body["error"]["code"] == "gated_login_required"
    _, unchanged = await api("GET", f"/models/{record['id']}")
    assert unchanged["status"] == "pending" and unchanged["error"] is None


async def test_jupyterlab_cache_buster_is_not_a_parameter(api: Api) -> None:
    status, listing = await api("GET", "/models", params={"1700000000000": ""})
    assert status == 200 and listing == {"models": []}
    status, body = await api("GET", "/models", params={"limitt": 1})
    assert status == 400 and "limitt" in body["error"]["message"]


async def test_unknown_model_is_404(api: Api) -> None:
    status, body = await api("GET", "/models/0b7a3c52-0000-4000-8000-000000000000")
    assert status == 404 and body["error"]["code"] == "not_found"


# -- bad input gets its 4xx and changes nothing ----------------------------------------------------

BAD_REQUESTS = [
    ("POST", "/models", b"{not json", 400, "invalid_argument"),
    ("POST", "/models", b"[" * 50_000, 400, "invalid_argument"),
    ("POST", "/models", b'["tiny/gpt2"]', 400, "invalid_argument"),
    ("POST", "/models", b"", 400, "invalid_argument"),
    ("POST", "/models", b'{"repo_id": 7}', 400, "invalid_argument"),
    ("POST", "/models", b'{"repo_id": "tiny/gpt2", "name": null}', 400, "invalid_argument"),
    ("POST", "/models", b'{"repo_id": "tiny/gpt2", "favourite": true}', 400, "invalid_argument"),
    ("POST", "/models", b'{"repo_id": "tiny/gpt2", "quantization": "bnb-3bit"}', 422, "unknown_choice"),
    ("POST", "/models", b'{"repo_id": "tiny/gpt2", "dtype": "float8"}', 422, "unknown_choice"),
    ("POST", "/models", b'{"repo_id": "tiny/gpt2", "option": "fp8"}', 422, "unknown_choice"),
    ("POST", "/models", b'{"repo_id": "../../etc/passwd"}', 400, "invalid_repo_id"),
    ("POST", "/models", b'{"repo_id": "a/b/c"}', 400, "invalid_repo_id"),
    ("POST", "/models", b'{"repo_id": "no spaces/allowed"}', 400, "invalid_repo_id"),
    ("POST", "/models", b'{"repo_id": "tiny/gpt2", "revision": "../../x"}', 400, "invalid_argument"),
    ("POST", "/models", json.dumps({"repo_id": "tiny/gpt2", "name": "x" * 100_000}).encode(), 413, "payload_too_large"),
    ("POST", "/models/preview", b'{"repo_id": "tiny/gpt2", "context": "long"}', 400, "invalid_argument"),
    ("POST", "/models/preview", b'{"repo_id": "tiny/gpt2", "batch": 0}', 400, "invalid_argument"),
    ("POST", "/cache/prune", b'{"everything": true}', 400, "invalid_argument"),
    ("GET", "/models?limit=many", None, 400, "invalid_argument"),
    ("GET", "/models?limit=-1", None, 400, "invalid_argument"),
    ("GET", "/models?status=exploded", None, 422, "unknown_choice"),
    ("GET", "/models?sort=password", None, 422, "unknown_choice"),
    ("GET", "/models?include_secrets=1", None, 400, "invalid_argument"),
    ("GET", "/models/..", None, 400, "invalid_argument"),
    ("GET", "/models/..%2F..%2Fetc%2Fpasswd", None, 400, "invalid_argument"),
    ("DELETE", "/models/%2e%2e%2fcatalog.sqlite", None, 400, "invalid_argument"),
    ("POST", "/models/..%2Fx/download", b"{}", 400, "invalid_argument"),
    ("GET", "/models/..%5C..%5Cwindows/architecture", None, 400, "invalid_argument"),
]


@pytest.mark.parametrize(("method", "path", "raw", "status", "code"), BAD_REQUESTS)
async def test_bad_input_is_rejected_and_changes_nothing(
    http_server_client: Any,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
    settings: Any,
    method: str,
    path: str,
    raw: bytes | None,
    status: int,
    code: str,
) -> None:
    # Sent raw (no client-side escaping), so encoded traversals reach the server as written.
    response = await http_server_client.fetch(
        f"{jp_base_url}{API}{path}",
        method=method,
        body=raw,
        headers=jp_auth_header,
        raise_error=False,
        allow_nonstandard_methods=True,
    )
    body = json.loads(response.body)
    assert (response.code, body["error"]["code"]) == (status, code), body
    assert "Traceback" not in response.body.decode()
    from mistudio_jupyter.core.catalog import Catalog

    catalog = Catalog(settings.db_url)
    try:
        assert catalog.list() == []
    finally:
        catalog.close()


async def test_a_listing_shows_what_another_process_wrote_since_the_last(api: Api, settings: Settings) -> None:
    """Entries are encoded once and kept: a listing after another process's write shows the new values."""
    from mistudio_jupyter.core.catalog import Catalog

    catalog = Catalog(settings.db_url)
    try:
        first, _ = catalog.add("tiny/gpt2")
        gone, _ = catalog.add("tiny/llama")
        assert [m["bytes_done"] for m in (await api("GET", "/models"))[1]["models"]] == [0, 0]
        catalog.update(first.id, bytes_done=7)
        catalog.delete(gone.id)
        _, listed = await api("GET", "/models")
    finally:
        catalog.close()
    assert [(m["id"], m["bytes_done"]) for m in listed["models"]] == [(first.id, 7)]


async def test_internal_errors_show_no_traceback_or_token(
    api: Api, mistudio: MiStudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = mistudio.manager

    def explode(**_: Any) -> None:
        raise RuntimeError("database at /secret/path exploded with hf_supersecrettoken123")

    monkeypatch.setattr(manager, "list_versions", explode)
    status, body = await api("GET", "/models")
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)


async def test_domain_error_messages_are_scrubbed_of_tokens(
    api: Api, mistudio: MiStudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = mistudio.manager

    def refuse(**_: Any) -> None:
        raise core_errors.InvalidToken("the token hf_test_bad_token_value was refused (Bearer abc.def)")

    monkeypatch.setattr(manager, "list_versions", refuse)
    status, body = await api("GET", "/models")
    assert status == 401 and body["error"]["code"] == "invalid_token"
    assert "hf_test_bad_token_value" not in body["error"]["message"] and "abc.def" not in body["error"]["message"]
