"""CLI start-up: `mistudio list` and `mistudio cancel` against `hf cache ls`, over the same (empty) cache.

Also timed: `python -c pass`, the interpreter's own start-up, which both commands pay.

Each run is a fresh process, the three commands taking turns so that they see the same machine load;
the figure is the median wall time, and the ratio ours / `hf cache ls` (goal: at most 1). Both run
in the default environment (`HF_HUB_OFFLINE=1` would make `hf cache ls` ~50 ms faster and ours no
different). `cancel` is timed on an entry that is already cancelled: its start-up, without a job to stop.

    .venv/bin/python benchmarks/bench_cli_startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ENV, ROOT  # noqa: E402

HF = Path(sys.executable).with_name("hf")
MISTUDIO = [sys.executable, "-m", "mistudio_jupyter"]


def wall_seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def cancelled_entry(env: dict[str, str]) -> str:
    """A catalog entry that is already cancelled (added straight to the catalog: no Hub needed)."""
    code = (
        "from mistudio_jupyter.core.catalog import Catalog; from mistudio_jupyter.core.settings import Settings; "
        "print(Catalog(Settings.from_env().db_url).add('org/model', status='cancelled')[0].id)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, env=env, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mistudio-bench-cli-") as work:
        cache = Path(work) / "hub"
        cache.mkdir()
        env = {
            **os.environ,
            **ENV,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_CACHE": str(cache),
            "HF_HOME": work,
            "MISTUDIO_DB_URL": f"sqlite:///{work}/catalog.sqlite",
        }
        model_id = cancelled_entry(env)
        commands = {
            "list": [*MISTUDIO, "list"],
            "cancel": [*MISTUDIO, "cancel", model_id],
            "hf cache ls": [str(HF), "cache", "ls"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        for command in commands.values():  # warm the page cache and the catalog (migrations, adoption)
            wall_seconds(command, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                times[name].append(wall_seconds(command, env))
    median = {name: statistics.median(values) for name, values in times.items()}
    peer = median["hf cache ls"]
    floor = median["python -c pass"]
    for name in ("list", "cancel"):
        print(
            f"mistudio {name}: {median[name] * 1000:.0f} ms, {median[name] / peer:.2f}× hf cache ls "
            f"({peer * 1000:.0f} ms)"
        )
    print(f"of which the interpreter's start-up: {floor * 1000:.0f} ms ({floor / peer:.2f}× hf cache ls)")
    print(
        json.dumps(
            {
                "benchmark": "cli_startup",
                "list_s": median["list"],
                "cancel_s": median["cancel"],
                "peer_hf_cache_ls_s": peer,
                "list_ratio": median["list"] / peer,
                "cancel_ratio": median["cancel"] / peer,
                "python_startup_s": floor,
                "repeat": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
