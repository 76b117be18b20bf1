"""The Hub client against the test Hub through the real huggingface_hub client: every error code."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from mistudio_jupyter.core import errors
from mistudio_jupyter.core.hub import HubClient, select_files, validate_repo_id
from mistudio_jupyter.core.settings import Settings
from mistudio_jupyter.core.snapshot import count_params
from tests.hubserver import HubServer
from tests.hubserver.fixtures import DEV_BRANCH_REPO
from tests.hubserver.wan import WanProfile


@pytest.fixture
def client(settings: Settings) -> HubClient:
    return HubClient(settings)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "../etc/passwd",
        "/abs/path",
        "https://huggingface.co/gpt2",
        "org/../x",
        "a/b/c",
        "a" * 200,
        "org/na me",
        None,
        42,
    ],
)
def test_invalid_repo_ids_are_refused_before_any_request(client, hub, bad):
    with pytest.raises(errors.InvalidRepoId):
        client.model_info(bad)
    with pytest.raises(errors.InvalidRepoId):
        client.download_plan(bad)
    time.sleep(0.1)  # a request sent from another thread (download_plan's config read) has arrived by now
    assert hub.log == []


def test_valid_repo_ids_pass():
    assert validate_repo_id("google/gemma-2-2b") == "google/gemma-2-2b"
    assert validate_repo_id("gpt2") == "gpt2"


def test_resolve_commit_and_file_plan(client):
    commit = client.resolve_commit("tiny/gpt2")
    assert len(commit) == 40
    plan = client.file_plan("tiny/gpt2")
    paths = [file.path for file in plan.files]
    assert "config.json" in paths and "model.safetensors" in paths and "tokenizer.json" in paths
    assert plan.commit == commit and not plan.pickle_only and not plan.remote_code
    weights = next(file for file in plan.files if file.path == "model.safetensors")
    assert weights.sha256 and weights.etag == weights.sha256 and weights.size > 0
    config = next(file for file in plan.files if file.path == "config.json")
    assert config.sha256 is None and config.etag == config.blob_id
    assert plan.download_bytes == sum(file.size for file in plan.files)


def config_reads(hub: HubServer) -> list[str]:
    return [record.path for record in hub.log if record.path.endswith("/config.json")]


def test_the_client_keeps_how_long_the_hub_took_to_answer(client, hub):
    """A download's worker learns from it that the Hub is far before its own first answer."""
    assert client.answer_s is None
    hub.faults.wan = WanProfile(rtt_ms=150, connect_rtts=0)

    client.model_info("tiny/gpt2")

    assert 0.15 <= client.answer_s < 5


def test_download_plan_reads_config_at_the_branch_while_the_info_is_asked(client, hub):
    info, plan = client.download_plan(DEV_BRANCH_REPO)
    assert config_reads(hub) == [f"/{DEV_BRANCH_REPO}/resolve/main/config.json"]
    assert plan is not None and plan.commit == info.sha and plan.config["model_type"] == "gpt2"


def test_download_plan_reads_config_again_by_commit_when_the_branch_moved_meanwhile(client, hub):
    """main moves to the dev commit after the info is answered and before config.json is: the config
    read at main is of another commit, so the plan reads it again by the info's commit."""
    spec = hub.repos[DEV_BRANCH_REPO]
    hub.faults.set(path="/resolve/main/config.json", stall_s=1.0)
    planned: list = []
    planning = threading.Thread(target=lambda: planned.append(client.download_plan(DEV_BRANCH_REPO)))
    planning.start()
    try:
        deadline = time.monotonic() + 10
        while not any(record.path.startswith("/api/models/") for record in hub.log):
            assert time.monotonic() < deadline, "the model info was never asked"
            time.sleep(0.005)
        hub.repos[DEV_BRANCH_REPO] = dataclasses.replace(spec, refs={**spec.refs, "main": spec.refs["dev"]})
        planning.join(10)
    finally:
        hub.repos[DEV_BRANCH_REPO] = spec
    ((info, plan),) = planned
    assert info.sha == spec.sha != spec.refs["dev"]
    assert config_reads(hub) == [
        f"/{DEV_BRANCH_REPO}/resolve/main/config.json",
        f"/{DEV_BRANCH_REPO}/resolve/{spec.sha}/config.json",
    ]
    assert plan is not None and plan.commit == spec.sha and plan.config["model_type"] == "gpt2"


def test_sharded_plan_has_every_shard_and_the_index(client):
    paths = [file.path for file in client.file_plan("tiny/llama-sharded").files]
    shards = [path for path in paths if path.endswith(".safetensors")]
    assert "model.safetensors.index.json" in paths and len(shards) > 1


def test_pickle_only_and_remote_code_are_flagged_and_refused(client):
    pickle_plan = client.file_plan("tiny/pickle-only")
    assert pickle_plan.pickle_only and any(path.path.endswith(".bin") for path in pickle_plan.files)
    with pytest.raises(errors.UnsafeRepo, match="allow_pickle"):
        pickle_plan.ensure_safe()
    pickle_plan.ensure_safe(allow_pickle=True)
    remote = client.file_plan("tiny/remote-code")
    assert remote.remote_code and not any(file.path.endswith(".py") for file in remote.files)
    with pytest.raises(errors.UnsafeRepo, match="custom code"):
        remote.ensure_safe()


def test_repo_without_config_warns(client):
    plan = client.file_plan("tiny/no-config")
    assert any("no config.json" in warning for warning in plan.warnings)


def test_select_files_prefers_safetensors_over_pickle():
    selected, warnings, pickle_only = select_files(
        ["config.json", "model.safetensors", "pytorch_model.bin", "original/consolidated.pth", "README.md"]
    )
    assert selected == ["config.json", "model.safetensors"] and not pickle_only and warnings == []


def test_repo_not_found(client):
    with pytest.raises(errors.RepoNotFound):
        client.model_info("nobody/nothing")


def test_revision_not_found(client):
    with pytest.raises(errors.RevisionNotFound):
        client.model_info("tiny/gpt2", revision="no-such-branch")


def test_private_repo_needs_a_token_that_sees_it(client):
    with pytest.raises(errors.RepoNotFound):
        client.model_info("tiny/private")
    assert client.model_info("tiny/private", token="hf_test_good").id == "tiny/private"


def test_gated_cases_are_told_apart(client):
    commit = client.resolve_commit("tiny/gated")  # info is public for gated repos
    with pytest.raises(errors.GatedLoginRequired):
        client.read_json("tiny/gated", commit, "config.json")
    with pytest.raises(errors.GatedNotApproved) as not_approved:
        client.read_json("tiny/gated", commit, "config.json", token="hf_test_ungranted")
    assert "/tiny/gated" in not_approved.value.message
    with pytest.raises(errors.InvalidToken):
        client.read_json("tiny/gated", commit, "config.json", token="hf_wrong")
    assert client.read_json("tiny/gated", commit, "config.json", token="hf_test_good")["model_type"]


def test_token_falls_back_to_settings(settings):
    with_token = HubClient(
        Settings.from_env(
            cache_dir=settings.cache_dir,
            db_url=settings.db_url,
            hub_endpoint=settings.hub_endpoint,
            token="hf_test_good",
        )
    )
    commit = with_token.resolve_commit("tiny/gated")
    assert with_token.read_json("tiny/gated", commit, "config.json")["model_type"]


def test_hub_unreachable(settings, tmp_path):
    dead = HubClient(Settings.from_env(cache_dir=tmp_path, db_url=settings.db_url, hub_endpoint="http://127.0.0.1:9"))
    with pytest.raises(errors.HubUnreachable):
        dead.model_info("tiny/gpt2")


def test_server_errors_map_to_hub_unreachable(client, hub):
    hub.faults.set(fail_requests=1, fail_times=100, fail_status=503)
    with pytest.raises(errors.HubUnreachable):
        client.model_info("tiny/gpt2")


def test_safetensors_headers_without_downloading_weights(client, hub):
    commit = client.resolve_commit("meta-llama/Meta-Llama-3-70B")
    hub.clear_log()
    tensors = client.safetensors_tensors("meta-llama/Meta-Llama-3-70B", commit)
    assert count_params(tensors) == 70_553_706_496
    assert sum(record.bytes_sent for record in hub.log) < 2_000_000
