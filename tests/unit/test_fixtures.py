"""The generated test repositories are what they claim: loadable tiny models, real full-size headers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from huggingface_hub import get_safetensors_metadata, snapshot_download

from tests.hubserver import HubServer, RepoSpec, build_fixtures, default_root
from tests.hubserver.fixtures import SHAPES_FILE
from tests.tiny_configs import TINY_CONFIGS

SHAPES = json.loads(SHAPES_FILE.read_text())["models"]


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_tiny_model_loads_and_runs(hub: HubServer, hf_cache: Path, family: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    snapshot = snapshot_download(f"tiny/{family}", cache_dir=hf_cache)
    tokenizer = AutoTokenizer.from_pretrained(snapshot)
    model = AutoModelForCausalLM.from_pretrained(snapshot)
    assert model.config.model_type == TINY_CONFIGS[family]["model_type"]
    ids = tokenizer("Attention heads move information.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], TINY_CONFIGS[family]["vocab_size"])
    assert torch.isfinite(logits).all()


def test_sharded_model_loads_and_matches_its_index(hub: HubServer, hf_cache: Path):
    from transformers import AutoModelForCausalLM

    snapshot = Path(snapshot_download("tiny/llama-sharded", cache_dir=hf_cache))
    index = json.loads((snapshot / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model = AutoModelForCausalLM.from_pretrained(snapshot)
    assert set(index["weight_map"]) == set(model.state_dict())


def test_chat_template(hub: HubServer, hf_cache: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(snapshot_download("tiny/llama", cache_dir=hf_cache))
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "<s>user: hi</s>"


def test_special_repos(fixture_repos: dict[str, RepoSpec]):
    weights = {
        repo_id: {p for p in spec.files if p.endswith((".safetensors", ".bin"))}
        for repo_id, spec in fixture_repos.items()
    }
    assert weights["tiny/pickle-only"] == {"pytorch_model.bin"}
    assert "config.json" not in fixture_repos["tiny/no-config"].files
    config = json.loads(fixture_repos["tiny/remote-code"].files["config.json"].read_bytes())
    assert "AutoModelForCausalLM" in config["auto_map"]
    assert {"configuration_tiny_remote.py", "modeling_tiny_remote.py"} <= set(fixture_repos["tiny/remote-code"].files)
    assert fixture_repos["tiny/gated"].gated == "manual" and fixture_repos["tiny/private"].private
    big = fixture_repos["tiny/big"].files["model.safetensors"]
    assert big.lfs and 50_000_000 < big.size < 51_000_000
    assert "bench/1gb" not in fixture_repos


def test_file_ids_are_the_hubs(fixture_repos: dict[str, RepoSpec]):
    for file in fixture_repos["tiny/llama-sharded"].files.values():
        data = file.read_bytes()
        assert len(data) == file.size
        if file.lfs:
            assert hashlib.sha256(data).hexdigest() == file.sha256
            assert file.path.endswith(".safetensors")
        else:
            assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == file.blob_id


def test_70b_parameter_count_through_the_hub(hub: HubServer):
    metadata = get_safetensors_metadata("meta-llama/Meta-Llama-3-70B")
    assert sum(metadata.parameter_count.values()) == 70_553_706_496
    assert metadata.parameter_count == {"BF16": 70_553_706_496}
    assert len(metadata.files_metadata) == 30 and metadata.sharded
    assert all(r.range and r.range.startswith("bytes=0-") for r in hub.log if r.method == "GET" and "/cdn/" in r.path)


@pytest.mark.parametrize("repo_id", sorted(SHAPES))
def test_full_size_repo_matches_the_reference(hub: HubServer, fixture_repos: dict[str, RepoSpec], repo_id: str):
    metadata = get_safetensors_metadata(repo_id)
    assert sum(metadata.parameter_count.values()) == SHAPES[repo_id]["params"]
    spec = fixture_repos[repo_id]
    assert spec.virtual and sum(spec.params.values()) == SHAPES[repo_id]["params"]  # type: ignore[union-attr]
    config = json.loads(spec.files["config.json"].read_bytes())
    assert config.items() >= SHAPES[repo_id]["config"].items() and config["architectures"]


def test_warm_build_reuses_the_built_files_and_is_stable(fixture_repos: dict[str, RepoSpec]):
    def fingerprint() -> dict[str, tuple[int, int]]:
        """Every file and folder of the fixture root: (inode, mtime), which a rebuild would change."""
        return {str(path): (path.stat().st_ino, path.stat().st_mtime_ns) for path in default_root().rglob("*")}

    before = fingerprint()
    again = build_fixtures(default_root())
    assert fingerprint() == before
    assert {k: v.sha for k, v in again.items()} == {k: v.sha for k, v in fixture_repos.items()}
