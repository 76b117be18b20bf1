"""Hostile input against a live server and the CLI: property-based (hypothesis) ids, repo ids,
revisions, filters and bodies; path traversal; symlinks planted in the cache; oversized, deeply nested,
unicode and control-character input. Only documented 4xx / exit codes, never a 500 or a traceback, and
nothing changes on a refusal."""

from __future__ import annotations

import io
import json
import os
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mistudio_jupyter import cli
from tests.polling import wait_for
from tests.reliability.live import JupyterServer, worker_pids

from .conftest import assert_refusal, plant_outside, state

FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TRAVERSAL_IDS = [
    "..",
    "...",
    "../..",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e",
    "..\\..\\windows",
    "%00",
    "a" * 65,
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "~root",
    "$(id)",
    "`id`",
    "id;rm -rf /",
]
TRAVERSAL_REPOS = [
    "../../etc",
    "tiny/../../x",
    "..",
    "../..",
    "/etc/passwd",
    "tiny/gpt2/../../../..",
    "tiny\\..\\..",
    "./tiny",
    "tiny/.",
    "models--tiny--gpt2",
    "tiny//gpt2",
    "C:\\Windows",
    "tiny/gpt2\x00.txt",
    "tiny/gpt2\n",
    " tiny/gpt2",
    "tiny/\u202egpt2",
    "ｔｉｎｙ/gpt2",
    "tiny/" + "a" * 300,
]
TRAVERSAL_REVISIONS = [
    "../../../../evil",
    "main/../../x",
    "/etc/passwd",
    "..",
    "refs/../../x",
    "main\x00",
    "ma in",
    "a" * 300,
    "\n",
    "main\r\nX-Injected: 1",
]

texts = st.text(st.characters(codec="utf-8"), max_size=80)
json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | texts
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12
)
quantizations = st.sampled_from(["none", "bnb-8bit", "bnb-4bit"]) | texts
dtypes = st.sampled_from(["auto", "float32", "float16", "bfloat16"]) | texts
repo_ids = st.sampled_from(TRAVERSAL_REPOS) | texts | st.builds(lambda a, b: f"{a}/{b}", texts, texts)
create_bodies = (
    st.fixed_dictionaries(
        {"repo_id": repo_ids},
        optional={
            "revision": st.sampled_from(TRAVERSAL_REVISIONS) | texts | json_values,
            "quantization": quantizations,
            "dtype": dtypes,
            "name": texts | json_values,
            "unknown": json_values,
        },
    )
    | json_values
)


def _refused_or_created(server: JupyterServer, status: int, payload: Any, before: Any) -> None:
    if status == 200:  # a valid body: the entry exists; remove it so that the next example starts clean
        assert isinstance(payload, dict) and payload["status"] == "pending"
        assert server.request("DELETE", f"/models/{payload['id']}")[0] == 200
    else:
        assert_refusal(status, payload)
    assert state(server) == before


@FUZZ
@given(body=create_bodies)
def test_create_bodies(live: JupyterServer, body: Any) -> None:
    before = state(live)
    status, payload = live.request("POST", "/models", body)
    _refused_or_created(live, status, payload, before)


@FUZZ
@given(
    model_id=st.sampled_from(TRAVERSAL_IDS) | texts,
    route=st.sampled_from(
        [
            ("GET", ""),
            ("DELETE", ""),
            ("POST", "/download"),
            ("POST", "/cancel"),
            ("POST", "/resume"),
            ("GET", "/architecture"),
            ("GET", "/hooks"),
            ("GET", "/estimate"),
        ]
    ),
)
def test_model_ids_in_paths(live: JupyterServer, model_id: str, route: tuple[str, str]) -> None:
    before = state(live)
    method, suffix = route
    quoted = model_id if "%" in model_id else quote(model_id, safe="")
    if not quoted:
        return
    status, payload = live.request(method, f"/models/{quoted}{suffix}", {} if method == "POST" else None)
    assert_refusal(status, payload)
    assert state(live) == before


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "token": texts | json_values,
            "allow_pickle": json_values,
            "allow_remote_code": json_values,
            "discard": json_values,
            "extra": json_values,
        },
    )
    | json_values,
    action=st.sampled_from(["download", "cancel", "resume"]),
)
def test_action_bodies_on_an_existing_entry(live: JupyterServer, body: Any, action: str) -> None:
    """Bodies for the download/cancel/resume of a real entry: refused (wrong shape) or accepted; a
    refusal changes nothing. `tiny/no-config` is used: accepted downloads end quickly either way."""
    model_id = live.create("tiny/no-config")["id"]
    before = state(live)
    status, payload = live.request("POST", f"/models/{model_id}/{action}", body)
    if status in (200, 202):
        assert payload["id"] == model_id
        wait_for(
            lambda: not worker_pids(live.db_url) and live.record(model_id)["status"] != "downloading",
            30,
            what="the accepted job to end",
        )
    else:
        assert_refusal(status, payload)
        assert state(live) == before


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(
            ["family", "quantization", "status", "min_params", "max_params", "q", "sort", "limit", "offset", "bogus"]
        )
        | texts,
        st.sampled_from(["-1", "0", "1e9", "10001", "NaN", "-name", "name", "' OR 1=1 --", "%", "_", "\x00"]) | texts,
        max_size=5,
    )
)
def test_list_filters(live: JupyterServer, query: dict[str, str]) -> None:
    before = state(live)
    status, payload = live.request("GET", "/models?" + urlencode(query))
    if status == 200:
        assert isinstance(payload["models"], list)
    else:
        assert_refusal(status, payload)
    assert state(live) == before


def test_prune_never_follows_links_out_of_the_cache(live: JupyterServer) -> None:
    """A partial-file link and a whole repo folder linked to a directory outside the cache: pruning
    removes at most the links, never the files they point at."""
    outside = plant_outside(live.root.parent)
    linked_partial = outside / "partial-target"
    linked_partial.write_text("precious")
    decoy = outside / "decoy-repo"
    (decoy / "blobs").mkdir(parents=True, exist_ok=True)
    decoy_partial = decoy / "blobs" / ("ab" * 32 + ".mistudio.incomplete")
    decoy_partial.write_text("precious")
    (live.cache / "models--tiny--pythia" / "blobs").mkdir(parents=True, exist_ok=True)
    os.symlink(linked_partial, live.cache / "models--tiny--pythia" / "blobs" / ("ef" * 32 + ".mistudio.incomplete"))
    os.symlink(decoy, live.cache / "models--evil--repo")
    status, pruned = live.request("POST", "/cache/prune", {})
    assert status == 200, pruned
    assert linked_partial.read_text() == "precious"
    assert decoy_partial.exists(), f"prune deleted {decoy_partial}, outside the cache, through a link"


CLI_COMMANDS = ["list", "show", "delete", "cancel", "add", "preview", "estimate", "arch", "hooks"]
cli_words = (
    st.sampled_from(
        [
            "--revision",
            "--quantization",
            "--dtype",
            "--family",
            "--status",
            "--min-params",
            "--max-params",
            "--sort",
            "--limit",
            "--offset",
            "--discard",
            "--modules",
            "--token-env",
            "--json",
            "-h",
            "none",
            "bnb-4bit",
            "float16",
            "-1",
            "1e99",
            "..",
            "../../etc",
            "tiny/gpt2",
            "tiny/../x",
            "HOME",
            "\x00",
            "--",
        ]
    )
    | texts
)


@FUZZ
@given(command=st.sampled_from(CLI_COMMANDS), words=st.lists(cli_words, max_size=5))
def test_cli_arguments(live: JupyterServer, monkeypatch: pytest.MonkeyPatch, command: str, words: list[str]) -> None:
    """`mistudio CMD WORDS…` on the live server's catalog (in-process, so each example is fast): exit 0,
    1 (a domain error) or 2 (usage) with a one-line message — never an exception escaping `main`."""
    monkeypatch.setenv("MISTUDIO_DB_URL", live.db_url)
    monkeypatch.setenv("MISTUDIO_CACHE_DIR", str(live.cache))
    before = state(live)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([command, *words], stdout=out, stderr=err)
    assert code in (0, 1, 2), (code, err.getvalue())
    assert "Traceback" not in err.getvalue() + out.getvalue()
    if code:
        assert err.getvalue().strip() and not out.getvalue()
        if "--json" in words:
            assert set(json.loads(err.getvalue().strip().splitlines()[-1])) == {"error"}
        assert state(live) == before
    elif command == "add":
        record = json.loads(out.getvalue()) if "--json" in words else None
        if record:
            live.request("DELETE", f"/models/{record['id']}")
