"""Shared by the benchmarks and their runner: the machine, fresh-interpreter timings, a live Jupyter
server with the extension, and the final-JSON-line convention."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "HF_HUB_DISABLE_XET": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MISTUDIO_DOWNLOAD_SUMMARY": "0",
}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor()
    try:
        cpu = (
            next(
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            )
            or cpu
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 1e9, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
    }


def fresh_seconds(code: str, repeat: int = 5) -> float:
    """Median over `repeat` pairs of the wall seconds of `python -c CODE` in a fresh interpreter minus an
    empty interpreter's, run back to back so that both see the same load."""

    def run(snippet: str) -> float:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", snippet], check=True, cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL
        )
        return time.perf_counter() - started

    return max(statistics.median(run(code) - run("pass") for _ in range(repeat)), 0.0)


def last_json_line(text: str) -> dict[str, Any] | None:
    """The last line of `text` that is a JSON object (every bench prints its figures so)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
