"""Per-family hook tables: canonical TransformerLens/SAELens hook names → Hugging Face modules.

Pure data, importable without torch. Each table maps a canonical name (``blocks.{i}.hook_resid_pre``)
to the module that carries the value in transformers 5, whether it is the module's input or output,
and how to extract it (tuple element, slice of a fused projection, pre-gain normalization). Every row
is proven on a tiny model in ``tests/unit/test_anatomy_hooks.py``; see
``shared/reference/hook-points.md`` for the sources.

Module templates use ``{layer}`` for the path of decoder layer ``i`` (``model.layers.3``).
Shapes are symbolic: B batch, P position, D d_model, H heads, Hkv kv heads, Dh head dim, M d_mlp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

Kind = Literal["input", "output"]
Category = Literal["residual", "attention", "mlp", "embedding", "norm", "module"]
Norm = Literal["layernorm", "rmsnorm"]


@dataclass(frozen=True)
class Split:
    """A slice of a fused projection's output along its last dimension.

    ``sizes`` are the symbolic sizes of consecutive pieces (``("H*Dh", "Hkv*Dh", "Hkv*Dh")``) and
    ``part`` the piece to take. With ``per_head`` the pieces are interleaved per head (GPT-NeoX): the
    output is first viewed as ``[..., H, sum(sizes)]`` and each piece is one head's slice.
    """

    sizes: tuple[str, ...]
    part: int
    per_head: bool = False


@dataclass(frozen=True)
class HookSpec:
    """One canonical hook point of a family, before a config fixes the layer and the sizes."""

    name: str
    module: str
    kind: Kind
    shape: tuple[str, ...]
    category: Category
    description: str
    index: int = 0
    split: Split | None = None
    normalize: Norm | None = None

    @property
    def computed(self) -> bool:
        """True where no module boundary holds the value and it is derived from one."""
        return self.split is not None or self.normalize is not None

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.name


@dataclass(frozen=True)
class FamilyTable:
    """The hook table of one transformers ``model_type``."""

    model_type: str
    layers: str
    hooks: Mapping[str, HookSpec]
    refused: Mapping[str, str]


def _h(
    name: str, module: str, kind: Kind, shape: str, category: Category, description: str, **extract: object
) -> HookSpec:
    return HookSpec(name, module, kind, tuple(shape.split()), category, description, **extract)


def _table(*specs: HookSpec) -> dict[str, HookSpec]:
    return {spec.name: spec for spec in specs}


def _freeze(
    model_type: str, layers: str, hooks: dict[str, HookSpec], refused: dict[str, str] | None = None
) -> FamilyTable:
    return FamilyTable(model_type, layers, MappingProxyType(hooks), MappingProxyType(refused or {}))


_RESID_PRE = "Residual stream entering block i."
_RESID_MID = "Residual stream after attention, before the MLP (sequential blocks)."
_RESID_POST = "Residual stream leaving block i."
_ATTN_OUT = "Attention output written to the residual stream."
_MLP_OUT = "MLP output written to the residual stream."
_Z = "Per-head attention result before the output projection."
_MLP_PRE = "MLP pre-activation (input of the nonlinearity; the gate branch in gated MLPs)."
_MLP_PRE_LINEAR = "Up-projection branch of a gated MLP (multiplied by act(gate))."
_MLP_POST = "MLP hidden activation, input of the down projection."
_LN = "Normalized input of {norm}, before its learned gain and bias (computed from the norm's input)."
_PARALLEL = (
    "{family} runs attention and MLP in parallel on the same input: there is no residual "
    "stream between them. Use blocks.{{i}}.hook_resid_pre or blocks.{{i}}.hook_resid_post."
)


_BLOCK_IN = _h("blocks.{i}.hook_resid_pre", "{layer}", "input", "B P D", "residual", _RESID_PRE)
_BLOCK_OUT = _h("blocks.{i}.hook_resid_post", "{layer}", "output", "B P D", "residual", _RESID_POST)


def _qkv_separate(q: str, k: str, v: str, note: str = "pre-RoPE") -> tuple[HookSpec, ...]:
    return (
        _h("blocks.{i}.attn.hook_q", q, "output", "B P H Dh", "attention", f"Queries ({note})."),
        _h("blocks.{i}.attn.hook_k", k, "output", "B P Hkv Dh", "attention", f"Keys ({note})."),
        _h("blocks.{i}.attn.hook_v", v, "output", "B P Hkv Dh", "attention", "Values."),
    )


def _qkv_fused(module: str, sizes: tuple[str, ...], per_head: bool, kv: str, note: str) -> tuple[HookSpec, ...]:
    return tuple(
        _h(
            f"blocks.{{i}}.attn.hook_{letter}",
            module,
            "output",
            f"B P {heads} Dh",
            "attention",
            f"{label} ({note}), split from the fused projection.",
            split=Split(sizes, part, per_head),
        )
        for part, (letter, heads, label) in enumerate((("q", "H", "Queries"), ("k", kv, "Keys"), ("v", kv, "Values")))
    )


def _pattern(attn: str) -> HookSpec:
    return _h(
        "blocks.{i}.attn.hook_pattern",
        attn,
        "output",
        "B H P P",
        "attention",
        "Attention probabilities; needs attn_implementation='eager'.",
        index=1,
    )


def _ln(name: str, module: str, norm: Norm) -> HookSpec:
    description = _LN.format(norm=module.replace("{layer}.", ""))
    return _h(name, module, "input", "B P D", "norm", description, normalize=norm)


def _llama(norm: Norm = "rmsnorm") -> dict[str, HookSpec]:
    """Llama-shaped sequential block with separate q/k/v and a gated MLP (Llama, Mistral, Qwen, Gemma)."""
    return _table(
        _h("hook_embed", "model.embed_tokens", "output", "B P D", "embedding", "Token embeddings."),
        _BLOCK_IN,
        _ln("blocks.{i}.ln1.hook_normalized", "{layer}.input_layernorm", norm),
        *_qkv_separate("{layer}.self_attn.q_proj", "{layer}.self_attn.k_proj", "{layer}.self_attn.v_proj"),
        _pattern("{layer}.self_attn"),
        _h("blocks.{i}.attn.hook_z", "{layer}.self_attn.o_proj", "input", "B P H Dh", "attention", _Z),
        _h("blocks.{i}.hook_attn_out", "{layer}.self_attn", "output", "B P D", "attention", _ATTN_OUT),
        _h("blocks.{i}.hook_resid_mid", "{layer}.post_attention_layernorm", "input", "B P D", "residual", _RESID_MID),
        _ln("blocks.{i}.ln2.hook_normalized", "{layer}.post_attention_layernorm", norm),
        _h("blocks.{i}.mlp.hook_pre", "{layer}.mlp.gate_proj", "output", "B P M", "mlp", _MLP_PRE),
        _h("blocks.{i}.mlp.hook_pre_linear", "{layer}.mlp.up_proj", "output", "B P M", "mlp", _MLP_PRE_LINEAR),
        _h("blocks.{i}.mlp.hook_post", "{layer}.mlp.down_proj", "input", "B P M", "mlp", _MLP_POST),
        _h("blocks.{i}.hook_mlp_out", "{layer}.mlp", "output", "B P D", "mlp", _MLP_OUT),
        _BLOCK_OUT,
        _ln("ln_final.hook_normalized", "model.norm", norm),
    )


def _gemma_sandwich() -> dict[str, HookSpec]:
    """Gemma-2/3: post-norms after attention and MLP; ``post_attention_layernorm`` is NOT ln2."""
    return {
        **_llama(),
        "blocks.{i}.hook_attn_out": _h(
            "blocks.{i}.hook_attn_out",
            "{layer}.post_attention_layernorm",
            "output",
            "B P D",
            "attention",
            _ATTN_OUT + " Gemma-2/3: the post-attention norm's output (as TransformerLens, Gemma Scope).",
        ),
        "blocks.{i}.hook_resid_mid": _h(
            "blocks.{i}.hook_resid_mid", "{layer}.pre_feedforward_layernorm", "input", "B P D", "residual", _RESID_MID
        ),
        "blocks.{i}.ln2.hook_normalized": _ln(
            "blocks.{i}.ln2.hook_normalized", "{layer}.pre_feedforward_layernorm", "rmsnorm"
        ),
        "blocks.{i}.hook_mlp_out": _h(
            "blocks.{i}.hook_mlp_out",
            "{layer}.post_feedforward_layernorm",
            "output",
            "B P D",
            "mlp",
            _MLP_OUT + " Gemma-2/3: the post-feedforward norm's output (Gemma Scope MLP SAEs).",
        ),
    }


def _phi3() -> dict[str, HookSpec]:
    """Phi-3: Llama-shaped with fused, contiguous qkv_proj and gate_up_proj."""
    up = Split(("M", "M"), 1)
    return {
        **_llama(),
        **_table(*_qkv_fused("{layer}.self_attn.qkv_proj", ("H*Dh", "Hkv*Dh", "Hkv*Dh"), False, "Hkv", "pre-RoPE")),
        "blocks.{i}.mlp.hook_pre": _h(
            "blocks.{i}.mlp.hook_pre",
            "{layer}.mlp.gate_up_proj",
            "output",
            "B P M",
            "mlp",
            _MLP_PRE + " First half of gate_up_proj.",
            split=replace(up, part=0),
        ),
        "blocks.{i}.mlp.hook_pre_linear": _h(
            "blocks.{i}.mlp.hook_pre_linear",
            "{layer}.mlp.gate_up_proj",
            "output",
            "B P M",
            "mlp",
            _MLP_PRE_LINEAR + " Second half of gate_up_proj.",
            split=up,
        ),
    }


def _gpt2() -> dict[str, HookSpec]:
    return _table(
        _h("hook_embed", "transformer.wte", "output", "B P D", "embedding", "Token embeddings."),
        _h(
            "hook_pos_embed",
            "transformer.wpe",
            "output",
            "1 P D",
            "embedding",
            "Learned position embeddings (broadcast over the batch).",
        ),
        _BLOCK_IN,
        _ln("blocks.{i}.ln1.hook_normalized", "{layer}.ln_1", "layernorm"),
        *_qkv_fused("{layer}.attn.c_attn", ("D", "D", "D"), False, "H", "Conv1D c_attn"),
        _pattern("{layer}.attn"),
        _h("blocks.{i}.attn.hook_z", "{layer}.attn.c_proj", "input", "B P H Dh", "attention", _Z),
        _h("blocks.{i}.hook_attn_out", "{layer}.attn", "output", "B P D", "attention", _ATTN_OUT),
        _h("blocks.{i}.hook_resid_mid", "{layer}.ln_2", "input", "B P D", "residual", _RESID_MID),
        _ln("blocks.{i}.ln2.hook_normalized", "{layer}.ln_2", "layernorm"),
        _h("blocks.{i}.mlp.hook_pre", "{layer}.mlp.c_fc", "output", "B P M", "mlp", _MLP_PRE),
        _h("blocks.{i}.mlp.hook_post", "{layer}.mlp.act", "output", "B P M", "mlp", _MLP_POST),
        _h("blocks.{i}.hook_mlp_out", "{layer}.mlp", "output", "B P D", "mlp", _MLP_OUT),
        _BLOCK_OUT,
        _ln("ln_final.hook_normalized", "transformer.ln_f", "layernorm"),
    )


def _gpt_neox() -> dict[str, HookSpec]:
    return _table(
        _h("hook_embed", "gpt_neox.embed_in", "output", "B P D", "embedding", "Token embeddings."),
        _BLOCK_IN,
        _ln("blocks.{i}.ln1.hook_normalized", "{layer}.input_layernorm", "layernorm"),
        *_qkv_fused(
            "{layer}.attention.query_key_value", ("Dh", "Dh", "Dh"), True, "H", "pre-RoPE, interleaved per head"
        ),
        _pattern("{layer}.attention"),
        _h("blocks.{i}.attn.hook_z", "{layer}.attention.dense", "input", "B P H Dh", "attention", _Z),
        _h("blocks.{i}.hook_attn_out", "{layer}.attention", "output", "B P D", "attention", _ATTN_OUT),
        # GPT-NeoX's post_attention_layernorm normalizes resid_pre for the parallel MLP branch.
        _ln("blocks.{i}.ln2.hook_normalized", "{layer}.post_attention_layernorm", "layernorm"),
        _h("blocks.{i}.mlp.hook_pre", "{layer}.mlp.dense_h_to_4h", "output", "B P M", "mlp", _MLP_PRE),
        _h("blocks.{i}.mlp.hook_post", "{layer}.mlp.act", "output", "B P M", "mlp", _MLP_POST),
        _h("blocks.{i}.hook_mlp_out", "{layer}.mlp", "output", "B P D", "mlp", _MLP_OUT),
        _BLOCK_OUT,
        _ln("ln_final.hook_normalized", "gpt_neox.final_layer_norm", "layernorm"),
    )


def _phi() -> dict[str, HookSpec]:
    return _table(
        _h("hook_embed", "model.embed_tokens", "output", "B P D", "embedding", "Token embeddings."),
        _BLOCK_IN,
        _ln("blocks.{i}.ln1.hook_normalized", "{layer}.input_layernorm", "layernorm"),
        *_qkv_separate("{layer}.self_attn.q_proj", "{layer}.self_attn.k_proj", "{layer}.self_attn.v_proj"),
        _pattern("{layer}.self_attn"),
        _h("blocks.{i}.attn.hook_z", "{layer}.self_attn.dense", "input", "B P H Dh", "attention", _Z),
        _h("blocks.{i}.hook_attn_out", "{layer}.self_attn", "output", "B P D", "attention", _ATTN_OUT),
        _h("blocks.{i}.mlp.hook_pre", "{layer}.mlp.fc1", "output", "B P M", "mlp", _MLP_PRE),
        _h("blocks.{i}.mlp.hook_post", "{layer}.mlp.activation_fn", "output", "B P M", "mlp", _MLP_POST),
        _h("blocks.{i}.hook_mlp_out", "{layer}.mlp", "output", "B P D", "mlp", _MLP_OUT),
        _BLOCK_OUT,
        _ln("ln_final.hook_normalized", "model.final_layernorm", "layernorm"),
    )


_PHI_REFUSED = {
    "blocks.{i}.hook_resid_mid": _PARALLEL.format(family="Phi-2"),
    "blocks.{i}.ln2.hook_normalized": "Phi-2 has one LayerNorm per block, shared by attention and MLP: "
    "use blocks.{i}.ln1.hook_normalized.",
}

TABLES: Mapping[str, FamilyTable] = MappingProxyType(
    {
        "gpt2": _freeze("gpt2", "transformer.h", _gpt2()),
        "gpt_neox": _freeze(
            "gpt_neox",
            "gpt_neox.layers",
            _gpt_neox(),
            {"blocks.{i}.hook_resid_mid": _PARALLEL.format(family="GPT-NeoX (Pythia)")},
        ),
        "llama": _freeze("llama", "model.layers", _llama()),
        "mistral": _freeze("mistral", "model.layers", _llama()),
        "gemma": _freeze("gemma", "model.layers", _llama()),
        "gemma2": _freeze("gemma2", "model.layers", _gemma_sandwich()),
        "gemma3_text": _freeze("gemma3_text", "model.layers", _gemma_sandwich()),
        "phi": _freeze("phi", "model.layers", _phi(), _PHI_REFUSED),
        "phi3": _freeze("phi3", "model.layers", _phi3()),
        "qwen2": _freeze("qwen2", "model.layers", _llama()),
        "qwen3": _freeze("qwen3", "model.layers", _llama()),
    }
)

_FAMILIES = {
    "gpt2": "gpt2",
    "gpt_neox": "pythia",
    "llama": "llama",
    "mistral": "mistral",
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3_text": "gemma",
    "phi": "phi",
    "phi3": "phi",
    "qwen2": "qwen",
    "qwen3": "qwen",
}


def family_of(model_type: str) -> str:
    """Coarse family used by catalog filters (``gemma2`` → ``gemma``); unknown types map to themselves."""
    return _FAMILIES.get(model_type, model_type)


def is_verified(model_type: str) -> bool:
    """Whether ``model_type`` has a hand-written, test-proven hook table (else the generic one applies)."""
    return model_type in TABLES
