"""Architecture from config alone: exact parameter counts, tied weights, folded layers, checkpoint cross-check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_jupyter.core.anatomy.architecture import build_meta_model, describe_architecture
from mistudio_jupyter.core.errors import InvalidArgument, UnsafeRepo
from tests.tiny_configs import TINY_CONFIGS

SHAPES = json.loads((Path(__file__).parents[1] / "hubserver/model_shapes.json").read_text())["models"]


@pytest.mark.parametrize("repo_id", sorted(SHAPES))
def test_exact_parameter_count(repo_id: str) -> None:
    architecture = describe_architecture(SHAPES[repo_id]["config"])
    summary = architecture["summary"]
    assert summary["params"] == SHAPES[repo_id]["params"]
    assert sum(summary["params_by_type"].values()) == summary["params"]
    assert architecture["warnings"] == []


def _find(node: dict, path: str) -> dict | None:
    if node["path"] == path:
        return node
    return next((found for child in node["children"] if (found := _find(child, path))), None)


def test_tree_folds_layers_and_marks_tied_weights() -> None:
    tree = describe_architecture(SHAPES["gpt2"]["config"])["tree"]
    layers = _find(tree, "transformer.h")
    assert [(c["path"], c["repeated"]) for c in layers["children"]] == [("transformer.h.0", 12)]
    assert layers["total_params"] == 12 * layers["children"][0]["total_params"]
    head = _find(tree, "lm_head")
    assert head["parameters"] == [
        {"name": "weight", "shape": [50257, 768], "dtype": "float32", "tied_to": "transformer.wte.weight"}
    ]
    assert head["own_params"] == 0 and tree["class_name"] == "GPT2LMHeadModel"


def test_summary_dims() -> None:
    summary = describe_architecture(SHAPES["google/gemma-2-2b"]["config"])["summary"]
    assert {
        k: summary[k]
        for k in (
            "hidden_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "context_length",
        )
    } == {
        "hidden_size": 2304,
        "num_layers": 26,
        "num_heads": 8,
        "num_kv_heads": 4,
        "head_dim": 256,
        "intermediate_size": 9216,
        "vocab_size": 256000,
        "context_length": 8192,
    }


def _tensors(family: str, dtype: str = "BF16") -> dict[str, tuple[str, tuple[int, ...]]]:
    model = build_meta_model(TINY_CONFIGS[family])
    return {name: (dtype, tuple(p.shape)) for name, p in model.named_parameters()}


def test_checkpoint_dtypes_and_cross_check() -> None:
    tensors = _tensors("llama")
    clean = describe_architecture(TINY_CONFIGS["llama"], tensors)
    assert clean["warnings"] == []
    assert _find(clean["tree"], "model.norm")["parameters"][0]["dtype"] == "bfloat16"
    tensors["model.norm.weight"] = ("BF16", (65,))
    del tensors["lm_head.weight"]
    tensors["model.extra.weight"] = ("F32", (3,))
    warnings = describe_architecture(TINY_CONFIGS["llama"], tensors)["warnings"]
    assert len(warnings) == 3
    assert "model.norm.weight" in warnings[0] and "lm_head.weight" in warnings[1] and "model.extra" in warnings[2]


def test_legacy_and_prefixless_checkpoint_names() -> None:
    pythia = {name.replace("lm_head.", "embed_out."): info for name, info in _tensors("pythia").items()}
    assert describe_architecture(TINY_CONFIGS["pythia"], pythia)["warnings"] == []
    gpt2 = {name.removeprefix("transformer."): info for name, info in _tensors("gpt2").items()}
    assert describe_architecture(TINY_CONFIGS["gpt2"], gpt2)["warnings"] == []


def test_refuses_remote_code_and_unknown_types() -> None:
    with pytest.raises(UnsafeRepo):
        describe_architecture({**TINY_CONFIGS["llama"], "auto_map": {"AutoModel": "x.Y"}})
    with pytest.raises(InvalidArgument):
        describe_architecture({"model_type": "no-such-model"})
    with pytest.raises(InvalidArgument):
        describe_architecture({"hidden_size": 4})


def test_concurrent_builds_leave_torchs_default_dtype_alone() -> None:
    """transformers flips torch's process-wide default dtype while building; a server builds in threads."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from mistudio_jupyter.core.anatomy.sizing import meta_model

    config = {**SHAPES["google/gemma-2-2b"]["config"], "num_hidden_layers": 2, "torch_dtype": "bfloat16"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda i: describe_architecture(config) if i % 2 else meta_model(config, torch.bfloat16), range(32)
            )
        )
    assert torch.get_default_dtype() == torch.float32
