"""Every `python -m benchmarks` run, kept in results/runs.jsonl (commit it with BENCHMARKS.md), so that a
range quoted in the notes comes from runs that printed it, on the machine of the run that quotes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUNS = Path(__file__).resolve().parent / "results" / "runs.jsonl"

Run = dict[str, Any]  # {"date", "machine", "total_s", "benches": {name: {"exit", "seconds", "result"}}}


def record(run: Run, path: Path = RUNS) -> None:
    """Append one run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as runs:
        runs.write(json.dumps(run, sort_keys=True) + "\n")


def recorded(machine: dict[str, Any], path: Path = RUNS) -> list[Run]:
    """The recorded runs made on `machine` (same CPU model, cores and memory), oldest first."""
    if not path.exists():
        return []
    same = ("cpu", "cores", "memory_gb")
    runs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [run for run in runs if all(run["machine"].get(key) == machine.get(key) for key in same)]


def values(runs: list[Run], bench: str, pick: Callable[[dict[str, Any]], float]) -> list[float]:
    """`pick(result)` of every run in which `bench` printed that figure."""
    found = []
    for run in runs:
        result = run["benches"].get(bench, {}).get("result")
        try:
            value = pick(result)
        except (KeyError, TypeError):  # the bench failed, or that run's version did not print this figure
            continue
        if value is not None:
            found.append(value)
    return found
