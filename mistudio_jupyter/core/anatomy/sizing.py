"""Memory estimates per load option, from config.json and the safetensors headers alone.

The rule (shared/DESIGN.md, "Estimates"): bitsandbytes quantizes only `nn.Linear` and GPT-2 `Conv1D`
weights outside the output head; embeddings, norms, biases and `lm_head` stay at the load dtype.
Which modules convert is decided by transformers' own functions on a meta-device model, so the
estimate matches `get_memory_footprint()` + quant state to the byte. Everything except
`model_layout` (which needs torch/transformers, imported lazily) is pure arithmetic.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..errors import InvalidArgument
from ..options import OPTION_NAMES

OPTIONS = OPTION_NAMES
"""The load options every estimate covers, in the order they are shown."""

DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
"""Bytes per element of each safetensors dtype."""

FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
_TORCH_TO_ST = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}

LOAD_DTYPE = {
    "fp32": "F32",
    "fp16": "F16",
    "bf16": "BF16",
    "bnb-8bit": "BF16",
    "bnb-4bit": "BF16",
    "bnb-4bit-dq": "BF16",
}
"""The dtype everything bitsandbytes leaves alone is loaded in (the loader's choice; fp16 has the same size)."""

OVERHEAD_BYTES: dict[str, dict[str, int]] = {
    # CPU: resident-memory growth of a fresh python process from interpreter start to a model loaded with
    # core.loading.load_model whose weights are negligible (qwen2-tiny rows of benchmarks/bench_estimates.py:
    # RSS growth − footprint, 3 runs each, spread ≤ 2 MB; torch 2.13 CPU, transformers 5.24, bitsandbytes
    # 0.50.2, 2-core x86_64). Importing torch + transformers is ~301 MB, the first from_pretrained pulls in
    # ~120 MB more; bitsandbytes adds ~129 MB of import and ~43 MB on its load path, less what is shared.
    "cpu": {"plain": 426_000_000, "bnb": 478_500_000},
    # CUDA: GPU memory a process holds beyond torch.cuda.memory_reserved (CUDA context, cuBLAS workspace),
    # measured by benchmarks/gpu_check.py on an H100 80GB (torch 2.11+cu130, driver 580): 648,871,936
    # bytes in all 8 loads (Qwen1.5-0.5B and gemma-2-2b, fp16/bf16/bnb-8bit/bnb-4bit); see BENCHMARKS.md.
    "cuda": {"plain": 648_871_936, "bnb": 648_871_936},
}
CPU_SHARED_LIBRARY_BYTES = {"plain": 164_000_000, "bnb": 171_500_000}
"""The part of the CPU overhead that is torch's and bitsandbytes' shared-library pages (`RssFile`). How
many of them a process maps depends on how the files entered the page cache: 93-98 MB after cold mmap
faults, ~180 MB when they were read in whole (just installed or copied). The rest, anonymous memory, is
stable within 0.1 MB: 262.0 MB plain, 307.0 MB with bitsandbytes."""

_BNB_STATE_SUFFIXES = (".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".SCB")
_BNB_SERIALIZATION_ONLY = (".weight_format", ".quant_state.bitsandbytes__nf4", ".quant_state.bitsandbytes__fp4")
_PACKED_FLOAT_SUFFIXES = (".scales", ".qzeros")


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A parameter or buffer: dtype (safetensors name, or None when it follows the load dtype) and shape."""

    dtype: str | None
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class ModelLayout:
    """What transformers builds from a config, reduced to what memory depends on.

    `params` has tied weights once (`tied` says whether there are any); `quantizable` maps each weight
    bitsandbytes converts to its out_features (the rows that get an 8-bit scale); `checkpoint_prefix` is
    the base-model prefix that older checkpoints omit from their tensor names; `params_by_type` counts the
    parameters by role (empty when the layout is approximated from checkpoint headers).
    """

    params: dict[str, Tensor]
    buffers: dict[str, Tensor]
    quantizable: dict[str, int]
    checkpoint_prefix: str
    num_layers: int
    kv_heads: int
    head_dim: int
    tied: bool = False
    sliding_layers: int = 0
    sliding_window: int | None = None
    params_by_type: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def param_count(self) -> int:
        return sum(tensor.numel for tensor in self.params.values())


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one load option needs: the lines of the preview's memory table."""

    weights_bytes: int
    quant_state_bytes: int
    overhead_bytes: int
    kv_cache_bytes: int
    peak_load_bytes: int
    total_bytes: int

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def config_dtype(config: Mapping[str, Any]) -> str | None:
    """The checkpoint dtype the config declares (safetensors name), if any."""
    name = config.get("dtype") or config.get("torch_dtype")
    return _TORCH_TO_ST.get(str(name).removeprefix("torch.")) if name else None


def quant_method(config: Mapping[str, Any]) -> str | None:
    """The pre-quantization of a checkpoint as an option-like label (bnb-4bit, bnb-8bit, gptq, awq...)."""
    quant = config.get("quantization_config")
    if not isinstance(quant, Mapping):
        return None
    method = str(quant.get("quant_method", "unknown"))
    if method == "bitsandbytes":
        return "bnb-4bit" if quant.get("load_in_4bit") else "bnb-8bit"
    return method


# -- layout (needs torch) --------------------------------------------------------------------------


def model_layout(config: Mapping[str, Any]) -> ModelLayout:
    """The layout transformers builds from `config` on the meta device (cached per config)."""
    return _cached_layout(json.dumps(config, sort_keys=True, default=str))


@lru_cache(maxsize=32)
def _cached_layout(config_json: str) -> ModelLayout:
    import torch

    from .architecture import import_transformers, params_by_type

    import_transformers()
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    config = json.loads(config_json)
    model = meta_model(config, torch.bfloat16)
    skip = set(get_keys_to_not_convert(model)) | set(model._keep_in_fp32_modules or ())
    skip |= set((config.get("quantization_config") or {}).get("llm_int8_skip_modules") or ())
    quantizable = {
        f"{name}.weight": _out_features(module)
        for name, module in model.named_modules()
        if _bnb_convertible(module) and should_convert_module(name, sorted(skip))
    }
    return ModelLayout(
        params={name: _tensor(p, torch.bfloat16) for name, p in model.named_parameters()},
        buffers={name: _tensor(b, torch.bfloat16) for name, b in model.named_buffers()},
        quantizable=quantizable,
        checkpoint_prefix=model.base_model_prefix or "",
        tied=bool(model.all_tied_weights_keys),
        params_by_type=params_by_type(model),
        **_attention_shape(model.config),
    )


def meta_model(config: Mapping[str, Any], dtype: Any = None) -> Any:
    """The model transformers would load for `config`, built on the meta device (no memory, no code
    from the repo): the causal-LM class when the config names one, else the bare model."""
    import torch

    from .architecture import META_BUILD_LOCK, import_transformers

    import_transformers()
    from transformers import AutoConfig

    options = {key: value for key, value in config.items() if key not in ("model_type", "auto_map")}
    hf_config = AutoConfig.for_model(config["model_type"], **options)
    with META_BUILD_LOCK, torch.device("meta"):
        return auto_model_class(hf_config).from_config(hf_config, dtype=dtype)


def auto_model_class(hf_config: Any) -> Any:
    """AutoModelForCausalLM when transformers knows a causal-LM head for this config, else AutoModel."""
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return AutoModelForCausalLM if hf_config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else AutoModel


def _bnb_convertible(module: Any) -> bool:
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    return type(module) is nn.Linear or isinstance(module, Conv1D)


def _out_features(module: Any) -> int:
    from transformers.pytorch_utils import Conv1D

    return int(module.weight.shape[1] if isinstance(module, Conv1D) else module.weight.shape[0])


def _tensor(tensor: Any, load_dtype: Any) -> Tensor:
    dtype = None if tensor.dtype == load_dtype else _TORCH_TO_ST[str(tensor.dtype).removeprefix("torch.")]
    return Tensor(dtype, tuple(tensor.shape))


def _attention_shape(hf_config: Any) -> dict[str, Any]:
    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    heads = int(text.num_attention_heads)
    layer_types = list(getattr(text, "layer_types", None) or [])
    window = getattr(text, "sliding_window", None)
    return {
        "num_layers": int(text.num_hidden_layers),
        "kv_heads": int(getattr(text, "num_key_value_heads", None) or heads),
        "head_dim": int(getattr(text, "head_dim", None) or text.hidden_size // heads),
        "sliding_layers": layer_types.count("sliding_attention") if window else 0,
        "sliding_window": int(window) if window else None,
    }


def layout_from_tensors(config: Mapping[str, Any], tensors: Mapping[str, tuple[str, tuple[int, ...]]]) -> ModelLayout:
    """An approximate layout for architectures transformers does not know (remote code): every checkpoint
    tensor is a parameter, and every 2-D weight except embeddings and the output head is quantizable."""
    params = {name: Tensor(None, tuple(shape)) for name, (_, shape) in tensors.items()}
    names = sorted(params)
    head = names[-1] if names else ""
    quantizable = {
        name: tensor.shape[0]
        for name, tensor in params.items()
        if len(tensor.shape) == 2
        and name.endswith(".weight")
        and name != head
        and not any(part in name for part in ("embed", "wte", "wpe", "lm_head"))
    }
    heads = int(config.get("num_attention_heads") or config.get("n_head") or 1)
    hidden = int(config.get("hidden_size") or config.get("n_embd") or heads)
    return ModelLayout(
        params=params,
        buffers={},
        quantizable=quantizable,
        checkpoint_prefix="",
        num_layers=int(config.get("num_hidden_layers") or config.get("n_layer") or 0),
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        tied="lm_head.weight" not in tensors,
    )


# -- arithmetic (pure) -----------------------------------------------------------------------------


def quant_state_bytes(numel: int, out_features: int, option: str) -> tuple[int, int]:
    """(weight bytes, quant-state bytes) of one weight bitsandbytes converts under `option`.

    8-bit: int8 weight + one fp32 scale (SCB) per output row. 4-bit nf4: two weights per byte, one
    fp32 absmax per 64-block and the 16-entry fp32 code. Double quant: uint8 absmax, an fp32 offset,
    and a second level of one fp32 absmax per 256 blocks with its 256-entry fp32 code. Checked byte for
    byte against bitsandbytes 0.50 Int8Params.SCB and Params4bit.quant_state (tests/unit/test_sizing.py).
    """
    if option == "bnb-8bit":
        return numel, 4 * out_features
    blocks = math.ceil(numel / 64)
    packed = (numel + 1) // 2
    if option == "bnb-4bit":
        return packed, 4 * blocks + 4 * 16
    return packed, blocks + 4 + 4 * math.ceil(blocks / 256) + 4 * 256 + 4 * 16


def kv_cache_bytes(layout: ModelLayout, *, context: int, batch: int, dtype_bytes: int) -> int:
    """Keys and values for `context` tokens × `batch` sequences; sliding-window layers hold only the window."""
    per_token = batch * 2 * layout.kv_heads * layout.head_dim * dtype_bytes
    full_layers = layout.num_layers - layout.sliding_layers
    window = min(context, layout.sliding_window or context)
    return per_token * (full_layers * context + layout.sliding_layers * window)


def estimate_from_layout(
    layout: ModelLayout,
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    *,
    config: Mapping[str, Any] | None = None,
    context: int = 0,
    batch: int = 1,
    device: str = "cpu",
) -> dict[str, MemoryEstimate]:
    """The memory table for every option, given the layout and the checkpoint's tensors (name → dtype, shape)."""
    if context < 0 or batch < 1:
        raise InvalidArgument(f"context must be ≥ 0 and batch ≥ 1 (got context={context}, batch={batch})")
    config = config or {}
    checkpoint = _checkpoint_bytes(tensors)
    source = _dominant_dtype(tensors) or config_dtype(config) or "F32"
    prequantized = quant_method(config) is not None
    table = {}
    for option in OPTIONS:
        if prequantized:
            weights, state = _prequantized_bytes(tensors, LOAD_DTYPE[option])
        else:
            weights, state = _weight_bytes(layout, option)
        weights += _buffer_bytes(layout, LOAD_DTYPE[option])
        converting = not prequantized and (option.startswith("bnb") or LOAD_DTYPE[option] != source)
        overhead = OVERHEAD_BYTES[_device_kind(device)]["bnb" if option.startswith("bnb") else "plain"]
        kv = kv_cache_bytes(layout, context=context, batch=batch, dtype_bytes=DTYPE_BYTES[LOAD_DTYPE[option]])
        result = weights + state + overhead
        table[option] = MemoryEstimate(
            weights_bytes=weights,
            quant_state_bytes=state,
            overhead_bytes=overhead,
            kv_cache_bytes=kv,
            peak_load_bytes=result + _load_transient(layout, tensors, checkpoint, device, converting),
            total_bytes=result + kv,
        )
    return table


def estimate_memory(
    config: Mapping[str, Any],
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    *,
    context: int = 0,
    batch: int = 1,
    device: str = "cpu",
) -> dict[str, MemoryEstimate]:
    """The memory table for every option of the model `config` describes, whose checkpoint holds
    `tensors` (name → (safetensors dtype, shape); may be empty for pickle-only repos)."""
    return estimate_from_layout(
        model_layout(config), tensors, config=config, context=context, batch=batch, device=device
    )


def _weight_bytes(layout: ModelLayout, option: str) -> tuple[int, int]:
    weights = state = 0
    for name, tensor in layout.params.items():
        if option.startswith("bnb") and name in layout.quantizable:
            packed, extra = quant_state_bytes(tensor.numel, layout.quantizable[name], option)
            weights, state = weights + packed, state + extra
        else:
            weights += tensor.numel * DTYPE_BYTES[tensor.dtype or LOAD_DTYPE[option]]
    return weights, state


def _buffer_bytes(layout: ModelLayout, load_dtype: str) -> int:
    return sum(tensor.numel * DTYPE_BYTES[tensor.dtype or load_dtype] for tensor in layout.buffers.values())


def _prequantized_bytes(tensors: Mapping[str, tuple[str, tuple[int, ...]]], load_dtype: str) -> tuple[int, int]:
    """A pre-quantized checkpoint loads its packed tensors as stored; bnb's absmax/code/SCB tensors are
    quant state (their JSON descriptors are parsed, not kept); the float rest (embeddings, norms, head)
    takes the load dtype."""
    weights = state = 0
    for name, (dtype, shape) in tensors.items():
        stored = math.prod(shape) * DTYPE_BYTES[dtype]
        if name.endswith(_BNB_SERIALIZATION_ONLY):
            continue
        if name.endswith(_BNB_STATE_SUFFIXES):
            # double quant's fp32 offset is serialized inside the JSON descriptor, not as a tensor
            state += stored + (4 if name.endswith(".nested_absmax") else 0)
        elif dtype not in FLOAT_DTYPES or name.endswith(_PACKED_FLOAT_SUFFIXES):
            weights += stored
        else:
            weights += math.prod(shape) * DTYPE_BYTES[load_dtype]
    return weights, state


def _load_transient(
    layout: ModelLayout,
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    checkpoint: int,
    device: str,
    converting: bool,
) -> int:
    """What loading holds beyond the result. CPU: a converting load keeps the mapped checkpoint next to
    the converted copy; a same-dtype load maps the checkpoint as the weights themselves. GPU: tensors
    arrive one at a time, so the largest one in its checkpoint dtype."""
    if _device_kind(device) == "cpu":
        return checkpoint if converting else 0
    return max((math.prod(shape) * DTYPE_BYTES[dtype] for dtype, shape in tensors.values()), default=0)


def _checkpoint_bytes(tensors: Mapping[str, tuple[str, tuple[int, ...]]]) -> int:
    return sum(math.prod(shape) * DTYPE_BYTES[dtype] for dtype, shape in tensors.values())


def _dominant_dtype(tensors: Mapping[str, tuple[str, tuple[int, ...]]]) -> str | None:
    counts: dict[str, int] = {}
    for dtype, shape in tensors.values():
        if dtype in FLOAT_DTYPES:
            counts[dtype] = counts.get(dtype, 0) + math.prod(shape)
    return max(counts, key=counts.__getitem__) if counts else None


def _device_kind(device: str) -> str:
    return "cpu" if device == "cpu" else "cuda"


def params_by_dtype(
    layout: ModelLayout, tensors: Mapping[str, tuple[str, tuple[int, ...]]], config: Mapping[str, Any]
) -> dict[str, int]:
    """Parameter count per stored dtype (tied weights once). Weights a pre-quantized checkpoint packs are
    counted logically under its quantization label; parameters without a header entry take the config dtype."""
    fallback = quant_method(config) or DTYPE_NAMES.get(config_dtype(config) or "", "unknown")
    counts: dict[str, int] = {}
    for name, tensor in layout.params.items():
        stored = _stored_tensor(name, layout.checkpoint_prefix, tensors)
        label = DTYPE_NAMES.get(stored[0], fallback) if stored else fallback
        if stored and quant_method(config) and math.prod(stored[1]) != tensor.numel:
            label = fallback
        counts[label] = counts.get(label, 0) + tensor.numel
    return counts


def _stored_tensor(
    name: str, prefix: str, tensors: Mapping[str, tuple[str, tuple[int, ...]]]
) -> tuple[str, tuple[int, ...]] | None:
    if name in tensors:
        return tensors[name]
    return tensors.get(name.removeprefix(f"{prefix}.")) if prefix else None
