"""Architecture and hook points through ModelManager and the CLI, from the test Hub (no weights)."""

from __future__ import annotations

import io
import json

import pytest

from mistudio_jupyter import cli
from mistudio_jupyter.core import errors
from mistudio_jupyter.core.service import ModelManager


@pytest.fixture
def manager(settings):
    manager = ModelManager(settings)
    yield manager
    manager.close()


def test_architecture_of_a_hub_repo_reads_headers_only(manager, hub):
    architecture = manager.architecture("meta-llama/Meta-Llama-3-70B")
    assert architecture["summary"]["params"] == 70_553_706_496
    assert architecture["summary"]["num_layers"] == 80
    assert not architecture.get("warnings")
    assert sum(record.bytes_sent for record in hub.log) < 2_000_000


def test_hook_points_of_a_hub_repo(manager):
    names = {hook.name for hook in manager.hook_points("tiny/gemma2")}
    assert {"blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out", "blocks.0.attn.hook_z"} <= names
    with_modules = manager.hook_points("tiny/gemma2", include_modules=True)
    assert any(hook.name.startswith("module:") for hook in with_modules)


def test_architecture_of_a_catalog_entry_is_read_locally(manager, hub, settings):
    from huggingface_hub import snapshot_download

    snapshot_download("tiny/gpt2", cache_dir=settings.cache_dir)
    (record,) = manager.adopt_cache()
    hub.clear_log()
    architecture = manager.architecture(record.id)
    assert architecture["summary"]["params"] == 141_056 and hub.log == []
    assert manager.hook_points(record.id)[0].name == "hook_embed" and hub.log == []


@pytest.mark.parametrize(
    ("repo", "error"),
    [
        ("tiny/no-config", errors.EntryNotFound),
        ("tiny/remote-code", errors.UnsafeRepo),
        ("nobody/nothing", errors.RepoNotFound),
        ("../../etc", errors.InvalidRepoId),
    ],
)
def test_bad_repos_give_clear_errors(manager, repo, error):
    with pytest.raises(error):
        manager.architecture(repo)


def _run(settings, *argv):
    out, err = io.StringIO(), io.StringIO()
    original = cli._default_manager
    cli._default_manager = lambda: ModelManager(settings)
    try:
        status = cli.main(list(argv), stdout=out, stderr=err)
    finally:
        cli._default_manager = original
    return status, out.getvalue(), err.getvalue()


def test_cli_arch_and_hooks(settings):
    status, out, _ = _run(settings, "arch", "tiny/pythia")
    assert status == 0 and "GPTNeoXForCausalLM" in out and "×2" in out
    status, out, _ = _run(settings, "hooks", "tiny/pythia", "--json")
    hooks = json.loads(out)
    assert status == 0 and {"name", "module", "kind", "shape", "computed"} <= set(hooks[0])
    assert not any(hook["name"].endswith("hook_resid_mid") for hook in hooks)  # parallel block
    status, out, _ = _run(settings, "hooks", "tiny/qwen3")
    assert "blocks.1.mlp.hook_pre_linear" in out and "model.layers.1.mlp.up_proj" in out
    status, _, err = _run(settings, "arch", "nobody/nothing", "--json")
    assert status == 1 and json.loads(err)["error"]["code"] == "repo_not_found"
