"""This machine's GPUs and RAM, and whether an estimate fits them.

GPU memory is read with NVML (pynvml) or `nvidia-smi`, never through torch: initialising CUDA in the
long-lived server process would pin a CUDA context (hundreds of MB of GPU memory) for its lifetime.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from .anatomy.sizing import MemoryEstimate

_MIB = 1024 * 1024


def system_resources() -> dict[str, Any]:
    """`{gpus: [{index, name, total_bytes, free_bytes}], ram: {total_bytes, available_bytes}}`."""
    import psutil

    memory = psutil.virtual_memory()
    return {"gpus": gpus(), "ram": {"total_bytes": int(memory.total), "available_bytes": int(memory.available)}}


def gpus() -> list[dict[str, Any]]:
    """The NVIDIA GPUs with their total and free memory; empty when there are none or no driver."""
    try:
        return _nvml_gpus()
    except Exception:  # noqa: BLE001 - pynvml missing or no driver: fall back to nvidia-smi
        return _smi_gpus()


def _nvml_gpus() -> list[dict[str, Any]]:
    import pynvml

    pynvml.nvmlInit()
    try:
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            found.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "total_bytes": int(info.total),
                    "free_bytes": int(info.free),
                }
            )
        return found
    finally:
        pynvml.nvmlShutdown()


def _smi_gpus() -> list[dict[str, Any]]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        output = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [gpu for gpu in map(parse_smi_line, output.splitlines()) if gpu is not None]


def parse_smi_line(line: str) -> dict[str, Any] | None:
    """One `index, name, memory.total, memory.free` CSV line of nvidia-smi (MiB) as a GPU entry."""
    parts = [part.strip() for part in line.split(",")]
    if len(parts) < 4:
        return None
    try:
        index, total, free = int(parts[0]), int(parts[-2]), int(parts[-1])
    except ValueError:
        return None
    return {"index": index, "name": ", ".join(parts[1:-2]), "total_bytes": total * _MIB, "free_bytes": free * _MIB}


def fit_verdict(estimates: Mapping[str, MemoryEstimate], resources: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per option: does it fit one GPU's free memory (None without GPUs) and the available RAM, and where
    to load it ("gpu", "cpu" or "none"). What must fit is the larger of the loaded total and the load peak."""
    free_gpu = [gpu["free_bytes"] for gpu in resources.get("gpus") or []]
    available = int(resources["ram"]["available_bytes"])
    verdicts = {}
    for option, estimate in estimates.items():
        need = max(estimate.total_bytes, estimate.peak_load_bytes)
        gpu = any(need <= free for free in free_gpu) if free_gpu else None
        ram = need <= available
        verdicts[option] = {"gpu": gpu, "ram": ram, "verdict": "gpu" if gpu else "cpu" if ram else "none"}
    return verdicts
