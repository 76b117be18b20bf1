"""`python -m benchmarks` (`make bench`): run the benchmarks, record the run, write BENCHMARKS.md and README's table.

Every `benchmarks/bench_*.py` runs, the run is recorded, and BENCHMARKS.md and the README's benchmarks
table are written from it.

Each bench runs in its own process (quick flags where it has them, so the whole run fits in 15 minutes
on 2 cores), its output goes to `benchmarks/results/<bench>.log`, and its final JSON line is appended,
with the others, to `benchmarks/results/runs.jsonl`. BENCHMARKS.md shows each figure beside its peer
measured in the same run (report.py), its notes fill benchmarks/NOTES.md from this run and the recorded
ones, and the README's table is copied from it (readme.py). The GPU figures measured on an H100 earlier
come from `benchmarks/results/gpu_check_h100.log`.

    .venv/bin/python -m benchmarks [--only NAME,...] [--output BENCHMARKS.md] [--readme README.md]
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import history, readme, report
from .common import ENV, ROOT, last_json_line, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TIMEOUT_S = 600
FLAGS = {"bench_download": ["--repeat", "5"], "bench_estimates": ["--quick"]}


def run(bench: Path) -> dict[str, Any]:
    """Run one bench; its output is kept in results/<name>.log."""
    command = [sys.executable, str(bench), *FLAGS.get(bench.stem, [])]
    started = time.perf_counter()
    print(f"== {bench.stem}: {' '.join(command[1:])}", flush=True)
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env={**os.environ, **ENV, "PYTHONPATH": str(ROOT)},
        )
        output, code = done.stdout + ("\n" + done.stderr if done.returncode else ""), done.returncode
    except subprocess.TimeoutExpired as expired:
        output, code = f"{expired.stdout or ''}\ntimed out after {TIMEOUT_S} s", -1
    seconds = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{bench.stem}.log").write_text(output if isinstance(output, str) else output.decode())
    result = last_json_line(done.stdout) if code == 0 else None
    print(f"   {'ok' if result is not None else f'FAILED (exit {code})'} in {seconds:.0f} s", flush=True)
    return {"name": bench.stem, "seconds": seconds, "exit": code, "result": result, "stdout": output}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated bench names (e.g. bench_server,bench_import)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--readme", type=Path, default=ROOT / "README.md", help="whose benchmarks table is rewritten from the output"
    )
    args = parser.parse_args(argv)
    benches = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {name if name.startswith("bench_") else f"bench_{name}" for name in args.only.split(",")}
        benches = [bench for bench in benches if bench.stem in wanted]
    # As a wheel install has it, and as the peers' packages are: an editable install leaves the package
    # uncompiled, and where PYTHONDONTWRITEBYTECODE is set each process would compile it again.
    compileall.compile_dir(ROOT / "mistudio_jupyter", quiet=1)
    started = time.perf_counter()
    done = [run(bench) for bench in benches]
    total = time.perf_counter() - started
    record = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "total_s": total,
        "benches": {item["name"]: {key: item[key] for key in ("exit", "seconds", "result")} for item in done},
    }
    history.record(record)
    report.write_report(done, record, history.recorded(record["machine"]), args.output)
    readme.write(args.output, args.readme)
    print(f"wrote {args.output} and the table of {args.readme} in {total / 60:.1f} min; run recorded in {history.RUNS}")
    return 0 if all(item["result"] is not None for item in done) else 1


if __name__ == "__main__":
    sys.exit(main())
