"""Preview JSON from config.json + safetensors headers only, against an in-memory hub."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace
from typing import Any

import pytest

from mistudio_jupyter.core.anatomy import describe_architecture, sizing
from mistudio_jupyter.core.errors import EntryNotFound
from mistudio_jupyter.core.preview import build_preview
from tests.unit.test_sizing import SHAPES

RESOURCES = {"gpus": [], "ram": {"total_bytes": 64 * 2**30, "available_bytes": 32 * 2**30}}
KEYS = {
    "repo_id",
    "revision",
    "commit",
    "family",
    "model_type",
    "architectures",
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "context_length",
    "tied_embeddings",
    "params",
    "params_by_dtype",
    "params_by_type",
    "files",
    "download_bytes",
    "gated",
    "license",
    "tags",
    "warnings",
    "capabilities",
    "memory",
    "fit",
    "system",
}


@dataclasses.dataclass
class FakeHub:
    """The HubClient calls preview makes, answered from memory."""

    files: dict[str, Any]
    tensors: dict[str, tuple[str, tuple[int, ...]]]
    warnings: list[str] = dataclasses.field(default_factory=list)

    def file_plan(self, repo_id: str, revision: str | None, token: str | None) -> Any:
        planned = [SimpleNamespace(path=path, size=len(json.dumps(body))) for path, body in self.files.items()]
        info = SimpleNamespace(sha="c" * 40, tags=["license:apache-2.0", "text-generation"], card_data=None)
        return SimpleNamespace(
            commit="c" * 40,
            files=planned,
            warnings=self.warnings,
            gated=False,
            download_bytes=sum(file.size for file in planned),
            info=info,
            config=self.files.get("config.json"),
        )

    def read_json(self, repo_id: str, commit: str, path: str, token: str | None) -> Any:
        return self.files.get(path)

    def safetensors_tensors(self, repo_id: str, commit: str, token: str | None) -> dict[str, Any]:
        return {name: SimpleNamespace(dtype=dtype, shape=shape) for name, (dtype, shape) in self.tensors.items()}


def full_size_hub(repo_id: str, dtype: str = "BF16") -> FakeHub:
    config = {**SHAPES[repo_id]["config"], "architectures": ["LlamaForCausalLM"]}
    model = sizing.meta_model(config)
    tensors = {name: (dtype, tuple(p.shape)) for name, p in model.named_parameters()}
    files = {
        "config.json": config,
        "model.safetensors": {},
        "tokenizer.json": {},
        "tokenizer_config.json": {"chat_template": "{{ messages }}"},
    }
    return FakeHub(files, tensors)


def test_70b_preview_has_the_contract_shape_and_exact_params() -> None:
    preview = build_preview(
        full_size_hub("meta-llama/Meta-Llama-3-70B"), "meta-llama/Meta-Llama-3-70B", context=8192, resources=RESOURCES
    )
    assert set(preview) == KEYS
    assert preview["params"] == 70_553_706_496 == preview["params_by_dtype"]["bfloat16"]
    assert sum(preview["params_by_type"].values()) == preview["params"]
    assert set(preview["params_by_type"]) == {"embedding", "attention", "mlp", "norm", "lm_head"}
    assert (preview["num_layers"], preview["num_kv_heads"], preview["head_dim"]) == (80, 8, 128)
    assert preview["tied_embeddings"] is False and preview["license"] == "apache-2.0"
    assert preview["capabilities"] == {
        "causal_lm": True,
        "tokenizer": True,
        "chat_template": True,
        "context_length": 8192,
        "hook_table": preview["capabilities"]["hook_table"],
    }
    assert set(preview["memory"]) == set(sizing.OPTIONS)
    assert (
        preview["memory"]["bf16"]["peak_load_bytes"]
        == preview["memory"]["bf16"]["total_bytes"] - preview["memory"]["bf16"]["kv_cache_bytes"]
    )
    assert preview["fit"]["fp32"] == {"gpu": None, "ram": False, "verdict": "none"}


def test_pickle_only_repo_is_counted_from_the_config() -> None:
    hub = full_size_hub("gpt2")
    hub.files = {"config.json": hub.files["config.json"], "pytorch_model.bin": {}}
    hub.tensors, hub.warnings = {}, ["only pickle weights (.bin/.pt): loading them can run arbitrary code"]
    preview = build_preview(hub, "gpt2", resources=RESOURCES)
    assert preview["params"] == SHAPES["gpt2"]["params"]
    config = hub.files["config.json"]
    assert preview["params_by_type"] == describe_architecture(config)["summary"]["params_by_type"], "as the page shows"
    assert preview["warnings"] == hub.warnings
    assert preview["capabilities"]["tokenizer"] is False


def test_unknown_architecture_is_approximated_with_a_warning() -> None:
    hub = full_size_hub("Qwen/Qwen1.5-0.5B")
    hub.files["config.json"] = {**hub.files["config.json"], "model_type": "brand_new", "auto_map": {"AutoModel": "x.Y"}}
    preview = build_preview(hub, "org/custom", resources=RESOURCES)
    assert preview["params"] == sum(sizing.math.prod(shape) for _, shape in hub.tensors.values())
    assert any("brand_new" in warning for warning in preview["warnings"])
    assert preview["params_by_type"] == {}, "roles are not guessed from tensor names"


def test_prequantized_checkpoint_warns() -> None:
    hub = full_size_hub("EleutherAI/pythia-70m")
    hub.files["config.json"] = {
        **hub.files["config.json"],
        "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True},
    }
    preview = build_preview(hub, "org/q", resources=RESOURCES)
    assert any("pre-quantized" in warning for warning in preview["warnings"])


def test_missing_config_is_a_clear_error() -> None:
    with pytest.raises(EntryNotFound, match="config.json"):
        build_preview(FakeHub({"README.md": {}}, {}), "org/none", resources=RESOURCES)


@pytest.fixture
def live_hub(settings):
    from mistudio_jupyter.core.hub import HubClient

    return HubClient(settings)


def test_live_hub_70b_reads_headers_only(live_hub, hub) -> None:
    """Through the real client and the test Hub: exact parameters, every option, a few hundred KB."""
    preview = build_preview(live_hub, "meta-llama/Meta-Llama-3-70B", resources=RESOURCES)
    assert preview["params"] == 70_553_706_496
    assert set(preview["memory"]) == {"fp32", "fp16", "bf16", "bnb-8bit", "bnb-4bit", "bnb-4bit-dq"}
    assert preview["download_bytes"] > 140_000_000_000
    assert sum(record.bytes_sent for record in hub.log) <= 2_000_000


@pytest.mark.parametrize("repo_id", sorted(SHAPES))
def test_live_hub_every_published_shape_is_exact(live_hub, repo_id) -> None:
    assert build_preview(live_hub, repo_id, resources=RESOURCES)["params"] == SHAPES[repo_id]["params"]


def test_live_hub_gated_without_token(live_hub) -> None:
    from mistudio_jupyter.core.errors import GatedLoginRequired

    with pytest.raises(GatedLoginRequired):
        build_preview(live_hub, "tiny/gated", resources=RESOURCES)
    assert build_preview(live_hub, "tiny/gated", token="hf_test_good", resources=RESOURCES)["gated"]


def test_live_hub_unsafe_repos_warn(live_hub) -> None:
    pickled = build_preview(live_hub, "tiny/pickle-only", resources=RESOURCES)
    assert any("pickle" in warning for warning in pickled["warnings"]) and pickled["params"] > 0
    remote = build_preview(live_hub, "tiny/remote-code", resources=RESOURCES)
    assert any("custom code" in warning for warning in remote["warnings"])
