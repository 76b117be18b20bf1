"""Hook tables proven on tiny random models: every identity of shared/reference/hook-points.md, every shape."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from mistudio_jupyter.core.anatomy.families import TABLES, family_of, is_verified
from mistudio_jupyter.core.anatomy.hooks import capture, hook_points, module_hook_points, resolve_hook
from mistudio_jupyter.core.errors import InvalidArgument
from tests.tiny_configs import TINY_CONFIGS, VOCAB_SIZE

ATOL = 1e-5
B, P = 2, 7
PARALLEL = {"pythia", "phi"}
SANDWICH = {"gemma2", "gemma3"}
# Independent of the tables under test: each family's attention and MLP modules and their projections.
ATTN = {"gpt2": "attn", "pythia": "attention"}
OUT_PROJ = {"gpt2": "attn.c_proj", "pythia": "attention.dense", "phi": "self_attn.dense"}
DOWN_PROJ = {"gpt2": "mlp.c_proj", "pythia": "mlp.dense_4h_to_h", "phi": "mlp.fc2"}
LAYERS = {"gpt2": "transformer.h", "pythia": "gpt_neox.layers"}
FINAL_NORM = {"gpt2": "transformer.ln_f", "pythia": "gpt_neox.final_layer_norm", "phi": "model.final_layernorm"}


def build(family: str, **overrides: object) -> torch.nn.Module:
    fields = {**TINY_CONFIGS[family], **overrides}
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def tiny(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    return request.param, build(request.param, attn_implementation="eager")


@pytest.fixture(scope="module")
def run(tiny: tuple[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Every canonical hook plus the raw module outputs the identities need, from one forward pass."""
    family, model = tiny
    layers = LAYERS.get(family, "model.layers")
    raw = [f"module:{FINAL_NORM.get(family, 'model.norm')}:output"] + [
        f"module:{layers}.{i}.{part}:output"
        for i in range(model.config.num_hidden_layers)
        for part in (ATTN.get(family, "self_attn"), "mlp")
    ]
    ids = torch.randint(3, VOCAB_SIZE, (B, P), generator=torch.Generator().manual_seed(1))
    with capture(model, [*hook_points(model), *raw]) as acts, torch.no_grad():
        acts["logits"] = model(ids).logits
    return acts


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=ATOL, rtol=0)


def test_families_import_without_torch() -> None:
    code = "import sys, mistudio_jupyter.core.anatomy; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_family_of_and_verified() -> None:
    assert [family_of(t) for t in ("gpt_neox", "gemma3_text", "phi3", "qwen3", "olmo")] == [
        "pythia",
        "gemma",
        "phi",
        "qwen",
        "olmo",
    ]
    assert all(is_verified(config["model_type"]) for config in TINY_CONFIGS.values())
    assert not is_verified("olmo")


def test_every_hook_has_its_declared_shape(tiny, run) -> None:
    for point in hook_points(tiny[1]):
        expected = tuple({"B": B, "P": P}.get(size, size) for size in point.shape)
        assert tuple(run[point.name].shape) == expected, point.name
        assert all(isinstance(size, int) or size in ("B", "P") for size in point.shape), point.name


def test_residual_identities(tiny, run) -> None:
    family, model = tiny
    n = model.config.num_hidden_layers
    embed = run["hook_embed"] + (run["hook_pos_embed"] if family == "gpt2" else 0)
    assert close(run["blocks.0.hook_resid_pre"], embed)
    for i in range(n):
        pre, post = run[f"blocks.{i}.hook_resid_pre"], run[f"blocks.{i}.hook_resid_post"]
        attn, mlp = run[f"blocks.{i}.hook_attn_out"], run[f"blocks.{i}.hook_mlp_out"]
        assert close(post, pre + attn + mlp), i
        if family not in PARALLEL:
            assert close(run[f"blocks.{i}.hook_resid_mid"], pre + attn), i
        if i + 1 < n:
            assert torch.equal(run[f"blocks.{i + 1}.hook_resid_pre"], post)


def test_attention_and_mlp_identities(tiny, run) -> None:
    family, model = tiny
    layers = LAYERS.get(family, "model.layers")
    for i in range(model.config.num_hidden_layers):
        layer = model.get_submodule(f"{layers}.{i}")
        attn_raw = run[f"module:{layers}.{i}.{ATTN.get(family, 'self_attn')}:output"]
        mlp_raw = run[f"module:{layers}.{i}.mlp:output"]
        out_proj = layer.get_submodule(OUT_PROJ.get(family, "self_attn.o_proj"))
        down_proj = layer.get_submodule(DOWN_PROJ.get(family, "mlp.down_proj"))
        with torch.no_grad():
            assert close(out_proj(run[f"blocks.{i}.attn.hook_z"].flatten(-2)), attn_raw)
            assert close(down_proj(run[f"blocks.{i}.mlp.hook_post"]), mlp_raw)
            if family in SANDWICH:
                assert close(run[f"blocks.{i}.hook_attn_out"], layer.post_attention_layernorm(attn_raw))
                assert close(run[f"blocks.{i}.hook_mlp_out"], layer.post_feedforward_layernorm(mlp_raw))
            else:
                assert torch.equal(run[f"blocks.{i}.hook_attn_out"], attn_raw)
                assert torch.equal(run[f"blocks.{i}.hook_mlp_out"], mlp_raw)


def test_value_split_reproduces_z(tiny, run) -> None:
    """z = pattern · v per head: proves the v slice of fused q/k/v projections (v carries no RoPE)."""
    config = tiny[1].config
    groups = config.num_attention_heads // (getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    for i in range(config.num_hidden_layers):
        v = run[f"blocks.{i}.attn.hook_v"].repeat_interleave(groups, dim=2)
        z = torch.einsum("bhps,bshd->bphd", run[f"blocks.{i}.attn.hook_pattern"], v)
        assert close(z, run[f"blocks.{i}.attn.hook_z"]), i


def test_gpt2_query_key_split_reproduces_pattern() -> None:
    model = build("gpt2", attn_implementation="eager")
    ids = torch.randint(3, VOCAB_SIZE, (B, P))
    with (
        capture(model, ["blocks.1.attn.hook_q", "blocks.1.attn.hook_k", "blocks.1.attn.hook_pattern"]) as acts,
        torch.no_grad(),
    ):
        model(ids)
    q, k = acts["blocks.1.attn.hook_q"], acts["blocks.1.attn.hook_k"]
    scores = torch.einsum("bphd,bshd->bhps", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(torch.ones(P, P, dtype=torch.bool).triu(1), float("-inf"))
    assert close(scores.softmax(-1), acts["blocks.1.attn.hook_pattern"])


UNGATED = {"gpt2", "pythia", "phi"}


def test_gated_mlp_halves(tiny, run) -> None:
    family, model = tiny
    if family in UNGATED:
        assert "blocks.0.mlp.hook_pre_linear" not in run  # no "up" branch to offer
        return
    act = model.get_submodule(f"model.layers.0.mlp.{'activation_fn' if family == 'phi3' else 'act_fn'}")
    expected = act(run["blocks.0.mlp.hook_pre"]) * run["blocks.0.mlp.hook_pre_linear"]
    assert close(expected, run["blocks.0.mlp.hook_post"])


def test_final_norm_and_normalized_hooks(tiny, run) -> None:
    family, model = tiny
    final = FINAL_NORM.get(family, "model.norm")
    with torch.no_grad():
        logits = model.lm_head(run[f"module:{final}:output"])
    if cap := getattr(model.config, "final_logit_softcapping", None):
        logits = torch.tanh(logits / cap) * cap
    assert close(logits, run["logits"])
    norm = model.get_submodule(final)
    gain = norm.weight + 1 if "Gemma" in type(norm).__name__ else norm.weight
    with torch.no_grad():
        affine = run["ln_final.hook_normalized"] * gain + (norm.bias if getattr(norm, "bias", None) is not None else 0)
    assert close(affine, run[f"module:{final}:output"])


def test_kwarg_inputs_are_captured() -> None:
    """llama-style layers call self_attn(hidden_states=...): the input hook must still see it."""
    model = build("llama")
    names = ["module:model.layers.0.self_attn:input", "module:model.layers.0.input_layernorm:output"]
    with capture(model, names) as acts, torch.no_grad():
        model(torch.randint(3, VOCAB_SIZE, (B, P)))
    assert torch.equal(acts[names[0]], acts[names[1]])


def test_pattern_needs_eager_attention() -> None:
    model = build("llama", attn_implementation="sdpa")
    with pytest.raises(InvalidArgument, match="eager"), capture(model, "blocks.0.attn.hook_pattern"):
        model(torch.randint(3, VOCAB_SIZE, (B, P)))


@pytest.mark.parametrize(
    ("family", "name", "reason"),
    [
        ("pythia", "blocks.0.hook_resid_mid", "parallel"),
        ("phi", "blocks.1.hook_resid_mid", "parallel"),
        ("phi", "blocks.0.ln2.hook_normalized", "one LayerNorm"),
        ("llama", "blocks.0.hook_resid_middle", "Unknown hook.*hook_resid_mid"),
        ("llama", "blocks.9.hook_resid_post", "out of range"),
        ("llama", "blocks.hook_embed", "Unknown hook"),
        ("gpt2", "hook_resid_pre", "Unknown hook"),
        ("qwen2", "module:model.layers.0.nope:output", "no module"),
    ],
)
def test_refused_names(family: str, name: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        resolve_hook(TINY_CONFIGS[family], name)


def test_resolve_matches_listing_and_module_names() -> None:
    config = TINY_CONFIGS["phi3"]
    listed = {point.name: point for point in hook_points(config)}
    assert resolve_hook(config, "blocks.1.attn.hook_k") == listed["blocks.1.attn.hook_k"]
    assert resolve_hook(config, "module:model.layers.1.mlp") == resolve_hook(config, "module:model.layers.1.mlp:output")
    modules = module_hook_points(config)
    assert {p.name for p in modules} >= {"module:model.layers.1.mlp:input", "module:lm_head:output"}
    assert resolve_hook(config, "module:model.layers.1.mlp:input").layer == 1
    assert all(point.category == "module" and not point.computed for point in modules)


def test_declared_tables_cover_the_contract() -> None:
    for model_type, table in TABLES.items():
        names = set(table.hooks) | set(table.refused)
        for name in (
            "hook_embed",
            "blocks.{i}.hook_resid_pre",
            "blocks.{i}.hook_resid_mid",
            "blocks.{i}.hook_resid_post",
            "blocks.{i}.hook_attn_out",
            "blocks.{i}.hook_mlp_out",
            "blocks.{i}.attn.hook_z",
            "blocks.{i}.mlp.hook_post",
            "ln_final.hook_normalized",
        ):
            assert name in names, (model_type, name)
    point = hook_points(TINY_CONFIGS["gemma2"])[3].to_dict()
    assert set(point) == {"name", "module", "kind", "layer", "shape", "computed", "description", "category", "generic"}


def test_generic_table_for_unverified_architecture() -> None:
    config = {
        "model_type": "olmo",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "vocab_size": VOCAB_SIZE,
    }
    points = hook_points(config)
    assert [p.name for p in points] == [
        "hook_embed",
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_resid_post",
    ]
    assert all(p.generic for p in points)
    with pytest.raises(InvalidArgument, match="Unknown hook"):
        resolve_hook(config, "blocks.0.hook_attn_out")
    fields = dict(config)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields)).eval()
    with capture(model, [p.name for p in points]) as acts, torch.no_grad():
        model(torch.randint(3, VOCAB_SIZE, (B, P)))
    assert torch.equal(acts["blocks.1.hook_resid_pre"], acts["blocks.0.hook_resid_post"])
    assert close(acts["blocks.0.hook_resid_pre"], acts["hook_embed"])


def _hooks_left(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_removed_after_an_error() -> None:
    model = build("llama", attn_implementation="eager")
    with pytest.raises(ZeroDivisionError), capture(model, hook_points(model), stop_after_last=True):
        assert _hooks_left(model) > 0 and "forward" in model.__dict__
        model(torch.randint(3, VOCAB_SIZE, (B, P)))
        raise ZeroDivisionError("an error inside the block")
    assert _hooks_left(model) == 0 and "forward" not in model.__dict__


def test_stop_after_last_skips_later_layers_and_accumulates() -> None:
    model = build("llama")
    calls = []
    model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    with capture(
        model, ["blocks.0.hook_resid_post", "blocks.0.attn.hook_q"], stop_after_last=True, accumulate=True
    ) as acts:
        with torch.no_grad():
            results = [model(torch.randint(3, VOCAB_SIZE, (B, P))) for _ in range(3)]
        after_stop = "still inside the block"
    assert after_stop and results == [None, None, None] and not calls
    assert [len(acts[name]) for name in acts] == [3, 3]
    assert acts["blocks.0.attn.hook_q"][0].shape == (B, P, 4, 16)


def test_dtype_and_device_options() -> None:
    model = build("qwen2")
    with capture(model, "blocks.0.hook_mlp_out", dtype=torch.float16, to_cpu=False) as acts, torch.no_grad():
        model(torch.randint(3, VOCAB_SIZE, (B, P)))
    assert acts["blocks.0.hook_mlp_out"].dtype == torch.float16 and not acts["blocks.0.hook_mlp_out"].requires_grad


# bitsandbytes' CPU 4-bit kernel packs weights in blocks: widths must be multiples of 32 (out) and 64 (in).
QUANTIZABLE = {"gemma": {"num_key_value_heads": 2}, "gemma2": {"hidden_size": 64}, "gemma3": {"hidden_size": 64}}


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_capture_on_4bit_model(family: str, tmp_path) -> None:
    from transformers import BitsAndBytesConfig

    model = build(family, **QUANTIZABLE.get(family, {}))
    model.save_pretrained(tmp_path)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    quantized = AutoModelForCausalLM.from_pretrained(
        tmp_path, quantization_config=quantization, device_map="cpu"
    ).eval()
    projection = quantized.get_submodule(resolve_hook(quantized, "blocks.0.attn.hook_z").module)
    assert type(projection).__name__ == "Linear4bit"
    names = [p.name for p in hook_points(quantized) if not p.name.endswith("hook_pattern")]
    ids = torch.randint(3, VOCAB_SIZE, (B, P))
    with capture(model, names) as full, capture(quantized, names) as quant, torch.no_grad():
        model(ids)
        quantized(ids)
    assert set(quant) == set(full) == set(names)
    for name in names:
        assert quant[name].shape == full[name].shape and torch.isfinite(quant[name]).all(), name
        similarity = torch.nn.functional.cosine_similarity(quant[name].flatten(), full[name].flatten(), dim=0)
        assert similarity > 0.9, (name, similarity)
