"""Model architecture from a config alone: the module tree on the meta device, dims and parameter counts.

Nothing here downloads or allocates weights: transformers builds the model on the ``meta`` device, so a
70B config describes itself in well under a second once transformers is imported. When the
checkpoint's safetensors headers are known, their dtypes are reported and names and shapes are
cross-checked against the model.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Union

from ..errors import InvalidArgument, UnsafeRepo

if TYPE_CHECKING:
    from torch import nn
    from transformers import PretrainedConfig

ConfigLike = Union[Mapping[str, Any], "PretrainedConfig"]
TensorInfos = Mapping[str, Any]
"""Safetensors header entries, name → ``(dtype, shape)`` (a tuple or an object with those fields)."""

_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
_ATTENTION_SEGMENTS = frozenset({"attn", "self_attn", "attention"})
_MLP_SEGMENTS = frozenset({"mlp", "feed_forward", "ffn"})
_MAX_LISTED = 5


@dataclass(frozen=True)
class Dims:
    """The sizes of a decoder-only transformer, as named in the architecture summary."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int | None
    vocab_size: int | None
    context_length: int | None

    def symbols(self) -> dict[str, int]:
        """Values of the symbolic shape names used by hook tables (D, H, Hkv, Dh, M, V)."""
        values = {
            "D": self.hidden_size,
            "H": self.num_heads,
            "Hkv": self.num_kv_heads,
            "Dh": self.head_dim,
            "M": self.intermediate_size,
            "V": self.vocab_size,
        }
        return {name: value for name, value in values.items() if value is not None}


def load_config(config: ConfigLike) -> PretrainedConfig:
    """A transformers config object from a ``config.json`` dict; remote-code configs are refused."""
    import_transformers()
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(config, PretrainedConfig):
        return config
    if "auto_map" in config:
        raise UnsafeRepo("This model needs remote code (auto_map in config.json); it is not built or run here.")
    fields = dict(config)
    model_type = fields.pop("model_type", None)
    if not model_type:
        raise InvalidArgument("config.json has no model_type.")
    try:
        return AutoConfig.for_model(model_type, **fields)
    except ValueError as error:
        raise InvalidArgument(f"transformers does not know model_type {model_type!r}.") from error


def model_dims(config: ConfigLike) -> Dims:
    """The summary sizes of ``config``, with the defaults transformers applies when keys are absent."""
    cfg = load_config(config)
    hidden = cfg.hidden_size
    heads = cfg.num_attention_heads
    return Dims(
        hidden_size=hidden,
        num_layers=cfg.num_hidden_layers,
        num_heads=heads,
        num_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or hidden // heads,
        intermediate_size=getattr(cfg, "intermediate_size", None)
        or getattr(cfg, "n_inner", None)
        or (4 * hidden if cfg.model_type == "gpt2" else None),
        vocab_size=getattr(cfg, "vocab_size", None),
        context_length=getattr(cfg, "max_position_embeddings", None),
    )


# transformers switches torch's process-wide default dtype while it builds a model and switches it back
# after; two threads building at once (a server's request pool) can leave it switched for good. Its lazy
# module is not thread-safe on first use either ("cannot import name 'AutoConfig'"), hence one lock.
META_BUILD_LOCK = threading.RLock()
_TRANSFORMERS_READY = threading.Event()


def import_transformers() -> None:
    """Import transformers and resolve the names core/ uses, once and under the lock."""
    if _TRANSFORMERS_READY.is_set():
        return
    with META_BUILD_LOCK:
        import transformers
        from transformers.models.auto import configuration_auto, modeling_auto  # noqa: F401
        from transformers.pytorch_utils import Conv1D  # noqa: F401
        from transformers.quantizers import base, quantizers_utils  # noqa: F401

        for name in ("AutoConfig", "AutoModel", "AutoModelForCausalLM", "PretrainedConfig"):
            getattr(transformers, name)
        _TRANSFORMERS_READY.set()


def build_meta_model(config: ConfigLike) -> nn.Module:
    """The model ``config`` describes, built on the meta device: the real module tree, no weights."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    cfg = load_config(config)
    with META_BUILD_LOCK, torch.device("meta"):
        try:
            return AutoModelForCausalLM.from_config(cfg).eval()
        except ValueError:
            return AutoModel.from_config(cfg).eval()


@lru_cache(maxsize=8)
def _cached_meta_model(config_json: str) -> nn.Module:
    return build_meta_model(json.loads(config_json))


def meta_model(config: ConfigLike) -> nn.Module:
    """Like :func:`build_meta_model`, but shared between calls with an equal config (do not modify it)."""
    cfg = load_config(config)
    return _cached_meta_model(cfg.to_json_string(use_diff=False))


def describe_architecture(config: ConfigLike, tensors: TensorInfos | None = None) -> dict[str, Any]:
    """The architecture JSON (`Architecture` in the OpenAPI document): ``{summary, tree, warnings}``.

    Parameter dtypes come from ``tensors`` (the safetensors headers) when given, else from the config's
    dtype. Tied parameters are counted once, at their first occurrence, and marked ``tied_to`` there
    after. Consecutive identical entries of a ``ModuleList`` are folded into the first (``repeated``).
    """
    cfg = load_config(config)
    model = build_meta_model(cfg)
    tied = _tied_parameters(model)
    checkpoint = _CheckpointNames(model, tensors or {})
    default_dtype = _config_dtype(cfg)
    tree, _ = _node(model, "", "", tied, lambda name: checkpoint.dtype(name) or default_dtype)
    summary = {
        **asdict(model_dims(cfg)),
        "params": tree["total_params"],
        "params_by_type": _params_by_type(model, tied),
    }
    return {"summary": summary, "tree": tree, "warnings": checkpoint.mismatches(tied) if tensors else []}


def _config_dtype(cfg: PretrainedConfig) -> str:
    return str(getattr(cfg, "dtype", None) or "float32").removeprefix("torch.")


def _tied_parameters(model: nn.Module) -> dict[str, str]:
    """Parameter name → name of its first occurrence, for every parameter shared under another name."""
    first: dict[int, str] = {}
    tied = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        owner = first.setdefault(id(parameter), name)
        if owner != name:
            tied[name] = owner
    return tied


def _node(
    module: nn.Module, path: str, name: str, tied: Mapping[str, str], dtype_of: Any
) -> tuple[dict[str, Any], tuple]:
    """A tree node and its structural signature (equal signatures ⇒ foldable siblings)."""
    parameters = []
    own = 0
    for local, parameter in module.named_parameters(recurse=False):
        full = f"{path}.{local}" if path else local
        parameters.append(
            {"name": local, "shape": list(parameter.shape), "dtype": dtype_of(full), "tied_to": tied.get(full)}
        )
        own += 0 if full in tied else parameter.numel()
    children, signatures = _fold(
        [
            _node(child, f"{path}.{child_name}" if path else child_name, child_name, tied, dtype_of)
            for child_name, child in module.named_children()
        ]
    )
    node = {
        "path": path,
        "name": name,
        "class_name": type(module).__name__,
        "own_params": own,
        "total_params": own + sum(child["total_params"] * child["repeated"] for child in children),
        "parameters": parameters,
        "repeated": 1,
        "children": children,
    }
    signature = (
        node["class_name"],
        tuple((p["name"], tuple(p["shape"]), p["dtype"], p["tied_to"] is None) for p in parameters),
        signatures,
    )
    return node, signature


def _fold(children: list[tuple[dict[str, Any], tuple]]) -> tuple[list[dict[str, Any]], tuple]:
    """Fold runs of identical, index-named siblings (the layers of a ModuleList) into their first."""
    nodes: list[dict[str, Any]] = []
    signatures: list[tuple] = []
    for node, signature in children:
        if nodes and node["name"].isdigit() and nodes[-1]["name"].isdigit() and signature == signatures[-1]:
            nodes[-1]["repeated"] += 1
        else:
            nodes.append(node)
            signatures.append(signature)
    return nodes, tuple(
        ("#" if node["name"].isdigit() else node["name"], signature, node["repeated"])
        for node, signature in zip(nodes, signatures)
    )


def params_by_type(model: nn.Module) -> dict[str, int]:
    """Parameter counts by role (embedding, attention, mlp, norm, lm_head, other), tied weights once."""
    return _params_by_type(model, _tied_parameters(model))


def _params_by_type(model: nn.Module, tied: Mapping[str, str]) -> dict[str, int]:
    """Parameter counts by role: embedding, attention, mlp, norm, lm_head, other."""
    from torch import nn

    modules = dict(model.named_modules())
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    counts: Counter[str] = Counter()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if name in tied:
            continue
        owner_path = name.rpartition(".")[0]
        owner = modules[owner_path]
        segments = set(owner_path.split("."))
        if owner is output:
            role = "lm_head"
        elif isinstance(owner, nn.Embedding):
            role = "embedding"
        elif segments & _ATTENTION_SEGMENTS:
            role = "attention"
        elif segments & _MLP_SEGMENTS:
            role = "mlp"
        elif "norm" in type(owner).__name__.lower():
            role = "norm"
        else:
            role = "other"
        counts[role] += parameter.numel()
    return dict(counts)


class _CheckpointNames:
    """Maps safetensors tensor names onto model parameter names (base-model prefix, legacy renames)."""

    def __init__(self, model: nn.Module, tensors: TensorInfos) -> None:
        self._parameters = {name: tuple(p.shape) for name, p in model.named_parameters(remove_duplicate=False)}
        self._prefix = getattr(model, "base_model_prefix", "")
        renames = _legacy_renames(model) if tensors else []
        self._by_parameter: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.unmatched: list[str] = []
        for tensor_name, info in tensors.items():
            dtype, shape = _tensor_info(info)
            parameter = self._match(tensor_name, renames)
            if parameter is None:
                self.unmatched.append(tensor_name)
            else:
                self._by_parameter[parameter] = (dtype, shape)

    def _match(self, tensor_name: str, renames: list[tuple[re.Pattern[str], str]]) -> str | None:
        for pattern, target in renames:
            tensor_name = pattern.sub(target, tensor_name)
        for candidate in (tensor_name, f"{self._prefix}.{tensor_name}"):
            if candidate in self._parameters:
                return candidate
        return None

    def dtype(self, parameter: str) -> str | None:
        found = self._by_parameter.get(parameter)
        return found[0] if found else None

    def mismatches(self, tied: Mapping[str, str]) -> list[str]:
        """Human-readable differences between the checkpoint and the model built from the config."""
        warnings = [
            f"{name}: the config gives shape {list(expected)}, the checkpoint {list(found[1])}"
            for name, expected in self._parameters.items()
            if (found := self._by_parameter.get(name)) and found[1] != expected
        ]
        missing = [name for name in self._parameters if name not in self._by_parameter and name not in tied]
        if missing:
            warnings.append(f"{len(missing)} parameter(s) of the model are not in the checkpoint: {_listing(missing)}")
        if self.unmatched:
            warnings.append(
                f"{len(self.unmatched)} checkpoint tensor(s) match no model parameter: {_listing(self.unmatched)}"
            )
        return warnings


def _legacy_renames(model: nn.Module) -> list[tuple[re.Pattern[str], str]]:
    """transformers' plain key renames for old checkpoints (e.g. GPT-NeoX ``embed_out`` → ``lm_head``)."""
    from transformers.conversion_mapping import extract_weight_conversions_for_model
    from transformers.core_model_loading import WeightRenaming

    return [
        (re.compile(rename.source_patterns[0]), rename.target_patterns[0])
        for rename in extract_weight_conversions_for_model(model) or []
        if type(rename) is WeightRenaming
    ]


def _tensor_info(info: Any) -> tuple[str, tuple[int, ...]]:
    dtype, shape = (info.dtype, info.shape) if hasattr(info, "dtype") else info
    return _SAFETENSORS_DTYPES.get(dtype, str(dtype).lower()), tuple(shape)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", … ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")
