"""Safetensors headers, and full-size "virtual" repositories whose weights are only headers on disk.

Tensor names and shapes come from building the model on the meta device from its published config,
so they are exactly what transformers builds (tied weights stored once, as `save_pretrained` does).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1}
TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
# The dtype each reference checkpoint is published in (bf16 unless the family published otherwise).
PUBLISHED_DTYPE = {
    "gpt2": "F32",
    "gpt2-medium": "F32",
    "EleutherAI/pythia-70m": "F16",
    "EleutherAI/pythia-410m": "F16",
    "meta-llama/Llama-2-7b-hf": "F16",
    "google/gemma-2-2b": "F32",
    "google/gemma-2-9b": "F32",
    "microsoft/phi-2": "F16",
}
MAX_SHARD_BYTES = 5 * 10**9  # the Hub's default max_shard_size ("5GB"): Llama-3-70B comes out at 30 shards

Tensor = tuple[str, str, tuple[int, ...]]  # (name, dtype, shape)


def safetensors_header(tensors: Iterable[Tensor]) -> tuple[bytes, int]:
    """The header of a safetensors file holding these tensors in order (length prefix included),
    and the size of its data region."""
    entries: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in tensors:
        nbytes = DTYPE_BYTES[dtype] * math.prod(shape)
        entries[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header, offset


def read_safetensors_header(head: bytes) -> dict[str, Any]:
    """The tensor entries of a safetensors header (given at least the header's bytes)."""
    (length,) = struct.unpack("<Q", head[:8])
    entries = json.loads(head[8 : 8 + length])
    entries.pop("__metadata__", None)
    return entries


def meta_model(config: dict[str, Any]) -> tuple[str, list[tuple[str, tuple[int, ...]]]]:
    """(class name, [(tensor name, shape)]) of the causal LM transformers builds from `config`,
    in state-dict order, tied weights once."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(config)
    model_config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    all_params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    kept = {name for name, _ in model.named_parameters()}
    state = model.state_dict()
    names = [name for name in state if name in kept or name not in all_params]
    return type(model).__name__, [(name, tuple(state[name].shape)) for name in names]


def _shards(tensors: list[Tensor], max_bytes: int) -> list[list[Tensor]]:
    shards: list[list[Tensor]] = [[]]
    size = 0
    for tensor in tensors:
        nbytes = safetensors_header([tensor])[1]
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += nbytes
    return shards


def write_virtual_repo(repo_dir: Path, repo_id: str, entry: dict[str, Any]) -> dict[str, int]:
    """Write config, model card and safetensors headers (+ index when sharded) of a full-size repo.

    Returns {path: data bytes to generate after the header on disk} for each weights file.
    """
    dtype = PUBLISHED_DTYPE.get(repo_id, "BF16")
    architecture, shapes = meta_model(entry["config"])
    config = {**entry["config"], "architectures": [architecture], "torch_dtype": TORCH_DTYPE[dtype]}
    repo_dir.mkdir(parents=True, exist_ok=True)
    (repo_dir / "config.json").write_text(json.dumps(config, indent=2))
    (repo_dir / "generation_config.json").write_text(json.dumps({"_from_model_config": True}, indent=2))
    (repo_dir / "README.md").write_text(f"# {repo_id}\n\nFull-size test stand-in: real headers, zero weights.\n")
    shards = _shards([(name, dtype, shape) for name, shape in shapes], MAX_SHARD_BYTES)
    if len(shards) == 1:
        return {"model.safetensors": _write_header(repo_dir / "model.safetensors", shards[0])}
    fills: dict[str, int] = {}
    weight_map: dict[str, str] = {}
    for index, shard in enumerate(shards, start=1):
        path = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        fills[path] = _write_header(repo_dir / path, shard)
        weight_map.update({name: path for name, _, _ in shard})
    index_json = {"metadata": {"total_size": sum(fills.values())}, "weight_map": weight_map}
    (repo_dir / "model.safetensors.index.json").write_text(json.dumps(index_json, indent=2))
    return fills


def _write_header(path: Path, tensors: list[Tensor]) -> int:
    header, data_bytes = safetensors_header(tensors)
    path.write_bytes(header)
    return data_bytes
