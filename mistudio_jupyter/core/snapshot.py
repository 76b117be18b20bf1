"""What a local snapshot folder holds: its config and its tensors' names, dtypes and shapes."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from .hub import TensorInfo


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from disk; None when the file is missing or not JSON."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def local_tensors(snapshot: Path) -> dict[str, TensorInfo]:
    """Name → dtype and shape of every tensor, from the headers of the local safetensors files."""
    tensors: dict[str, TensorInfo] = {}
    for path in sorted(snapshot.glob("*.safetensors")):
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                tensors[name] = TensorInfo(dtype=info["dtype"], shape=tuple(info["shape"]))
    return tensors


def count_params(tensors: dict[str, TensorInfo]) -> int | None:
    """Elements over all tensors (a checkpoint stores tied weights once); None when there are none."""
    if not tensors:
        return None
    total = 0
    for info in tensors.values():
        count = 1
        for dim in info.shape:
            count *= dim
        total += count
    return total
