"""Preview a Hub repo before downloading it: architecture, exact size, memory per option, fit.

Reads only config.json, tokenizer_config.json and the safetensors headers (ranged reads); nothing of the
weights is downloaded and no code from the repo is run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .anatomy import sizing
from .errors import EntryNotFound
from .system import fit_verdict, system_resources

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def build_preview(
    hub: Any,
    repo_id: str,
    revision: str | None = None,
    token: str | None = None,
    *,
    context: int = 0,
    batch: int = 1,
    resources: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The preview JSON (`Preview` in the OpenAPI document) of `repo_id` at `revision` (default branch when None).

    `resources` (as `system_resources()` returns) is read from this machine when not given.
    """
    plan = hub.file_plan(repo_id, revision, token)
    info, config = plan.info, plan.config
    if not config or "model_type" not in config:
        raise EntryNotFound(
            f"{repo_id} has no usable config.json (with a model_type), so its architecture and size cannot "
            "be read; it is not a transformers model repo"
        )
    paths = {file.path for file in plan.files}
    headers = (
        hub.safetensors_tensors(repo_id, plan.commit, token) if any(p.endswith(".safetensors") for p in paths) else {}
    )
    tensors = {name: (tensor.dtype, tuple(tensor.shape)) for name, tensor in headers.items()}
    layout, summary, warnings = _layout(config, tensors)
    resources = dict(resources or system_resources())
    memory = sizing.estimate_from_layout(
        layout, tensors, config=config, context=context, batch=batch, device="cuda" if resources["gpus"] else "cpu"
    )
    return {
        "repo_id": repo_id,
        "revision": revision or "main",
        "commit": plan.commit,
        **_identity(config),
        **summary,
        "params": layout.param_count,
        "params_by_dtype": sizing.params_by_dtype(layout, tensors, config),
        "params_by_type": layout.params_by_type,
        "files": [{"path": file.path, "size": file.size} for file in plan.files],
        "download_bytes": plan.download_bytes,
        "gated": bool(plan.gated),
        "license": _license(info),
        "tags": list(getattr(info, "tags", None) or []),
        "warnings": list(plan.warnings) + warnings + _quantized_warning(config),
        "capabilities": _capabilities(hub, repo_id, plan.commit, token, config, paths, summary["context_length"]),
        "memory": {option: estimate.to_dict() for option, estimate in memory.items()},
        "fit": fit_verdict(memory, resources),
        "system": resources,
    }


def _identity(config: Mapping[str, Any]) -> dict[str, Any]:
    from .anatomy.families import family_of

    return {
        "family": family_of(config["model_type"]),
        "model_type": config["model_type"],
        "architectures": list(config.get("architectures") or []),
    }


def _layout(
    config: Mapping[str, Any], tensors: Mapping[str, tuple[str, tuple[int, ...]]]
) -> tuple[sizing.ModelLayout, dict[str, Any], list[str]]:
    """The exact layout from transformers, or, for an architecture it does not know (remote code), one
    approximated from the checkpoint headers, with a warning."""
    try:
        layout = sizing.model_layout(config)
    except (ValueError, KeyError, TypeError, AttributeError):
        layout = sizing.layout_from_tensors(config, tensors)
        warning = (
            f"transformers does not know model_type {config['model_type']!r}: sizes are approximated "
            "from the checkpoint headers"
        )
        return layout, _summary(config, layout), [warning]
    return layout, _summary(config, layout), []


def _summary(config: Mapping[str, Any], layout: sizing.ModelLayout) -> dict[str, Any]:
    heads = _first(config, "num_attention_heads", "n_head")
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    return {
        "hidden_size": hidden,
        "num_layers": layout.num_layers,
        "num_heads": heads,
        "num_kv_heads": layout.kv_heads,
        "head_dim": layout.head_dim,
        "intermediate_size": _first(config, "intermediate_size", "n_inner", "ffn_dim")
        or (4 * hidden if hidden else None),
        "vocab_size": _first(config, "vocab_size"),
        "context_length": _first(config, "max_position_embeddings", "n_positions", "n_ctx"),
        "tied_embeddings": layout.tied,
    }


def _first(config: Mapping[str, Any], *keys: str) -> Any:
    return next((config[key] for key in keys if config.get(key) is not None), None)


def _quantized_warning(config: Mapping[str, Any]) -> list[str]:
    method = sizing.quant_method(config)
    if method is None:
        return []
    return [
        f"pre-quantized checkpoint ({method}): it loads as stored; sizes come from its packed tensors and "
        "the quantization options do not apply"
    ]


def _capabilities(
    hub: Any,
    repo_id: str,
    commit: str,
    token: str | None,
    config: Mapping[str, Any],
    paths: set[str],
    context_length: int | None,
) -> dict[str, Any]:
    from .anatomy.architecture import import_transformers
    from .anatomy.families import is_verified

    import_transformers()
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    architectures = config.get("architectures") or []
    chat = bool(paths & set(CHAT_TEMPLATE_FILES))
    if not chat and "tokenizer_config.json" in paths:
        chat = bool((hub.read_json(repo_id, commit, "tokenizer_config.json", token) or {}).get("chat_template"))
    return {
        "causal_lm": config["model_type"] in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        or any(str(name).endswith("ForCausalLM") for name in architectures),
        "tokenizer": bool(paths & set(TOKENIZER_FILES)),
        "chat_template": chat,
        "context_length": context_length,
        "hook_table": "verified" if is_verified(config["model_type"]) else "generic",
    }


def _license(info: Any) -> str | None:
    card = getattr(info, "card_data", None)
    license_ = getattr(card, "license", None) if card is not None else None
    if license_:
        return str(license_)
    return next(
        (tag.removeprefix("license:") for tag in getattr(info, "tags", None) or [] if tag.startswith("license:")), None
    )
