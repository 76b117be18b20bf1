"""`python -m benchmarks` (`make bench`): run every `benchmarks/bench_*.py`, then write BENCHMARKS.md.

Each bench runs in its own process (quick flags where it has them, so the whole run fits in 15 minutes
on 2 cores), its output goes to `benchmarks/results/<bench>.log`, and its final JSON line becomes rows of
figure / ours / peer (measured in the same run) / ratio / goal. The GPU figures measured on an H100
earlier come from `benchmarks/results/gpu_check_h100.log`.

    .venv/bin/python -m benchmarks [--only NAME,...] [--output BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .common import ENV, ROOT, last_json_line, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GPU_LOG = RESULTS / "gpu_check_h100.log"
TIMEOUT_S = 600
FLAGS = {"bench_download": ["--repeat", "3"], "bench_estimates": ["--quick"]}

Row = tuple[str, str, str, str, str]  # figure, ours, peer, ratio, goal


def run(bench: Path) -> dict[str, Any]:
    """Run one bench; its output is kept in results/<name>.log."""
    command = [sys.executable, str(bench), *FLAGS.get(bench.stem, [])]
    started = time.perf_counter()
    print(f"== {bench.stem}: {' '.join(command[1:])}", flush=True)
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
                              env={**os.environ, **ENV, "PYTHONPATH": str(ROOT)})
        output, code = done.stdout + ("\n" + done.stderr if done.returncode else ""), done.returncode
    except subprocess.TimeoutExpired as expired:
        output, code = f"{expired.stdout or ''}\ntimed out after {TIMEOUT_S} s", -1
    seconds = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{bench.stem}.log").write_text(output if isinstance(output, str) else output.decode())
    result = last_json_line(done.stdout) if code == 0 else None
    print(f"   {'ok' if result is not None else f'FAILED (exit {code})'} in {seconds:.0f} s", flush=True)
    return {"name": bench.stem, "seconds": seconds, "exit": code, "result": result, "stdout": output}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _ratio(ours: float, peer: float, better: str = "lower") -> str:
    if not peer:
        return "–"
    ratio = ours / peer
    return f"{ratio:.2f}× ({'lower is better' if better == 'lower' else 'higher is better'})"


def download_rows(r: dict[str, Any]) -> list[Row]:
    gbps, kill, cancel = r["gbps"], r["refetched_after_kill_at_half"], r["cancel_latency_s"]
    size = f"{r['file_bytes'] / 2**30:.2f} GiB"
    return [
        (f"download {size}, loopback: throughput", f"{gbps['ours']:.2f} GB/s", f"curl {gbps['curl']:.2f} GB/s",
         f"{r['ratio_vs_curl']:.2f}× curl", "≥ 0.8× curl"),
        (f"download {size}: throughput", f"{gbps['ours']:.2f} GB/s", f"hf_hub_download {gbps['hf_hub_download']:.2f} GB/s",
         f"{r['ratio_vs_hf_hub_download']:.2f}× hf_hub_download", "≥ 1.5×"),
        (f"download {size}, sha256-verified: throughput", f"{gbps['ours']:.2f} GB/s",
         f"curl then openssl sha256 {gbps['curl_then_sha256']:.2f} GB/s",
         f"{r['ratio_vs_curl_then_sha256']:.2f}× verified curl", "–"),
        ("ceiling of a sha256-verified download here: sha256 alone, in memory",
         f"ours at {r['ratio_vs_sha256_ceiling']:.0%} of it", f"sha256 {gbps['sha256_in_memory']:.2f} GB/s",
         f"ceiling {r['sha256_ceiling_vs_curl']:.2f}× curl", "–"),
        ("bytes fetched twice after SIGKILL at 50%", f"{kill['ours']['fetched_twice']:.2%}",
         f"hf_hub_download {kill['hf_hub_download']['fetched_twice']:.1%}", "–", "≤ 1%"),
        ("cancel latency (signal / catalog flag)", f"{_ms(cancel['signal'])} / {_ms(cancel['flag'])}",
         "hf_hub_download: no cancel", "–", "≤ 1 s"),
    ]


def anatomy_rows(r: dict[str, Any]) -> list[Row]:
    return [
        ("Llama-3-70B architecture + hooks (meta device)", f"first {r['arch_70b_first_s']:.2f} s, warm "
         f"{r['arch_70b_warm_median_s']:.2f} s", "–", "–", "≤ 1 s"),
        (f"capture 4 hooks, {r['capture_params'] / 1e6:.0f}M-param forward", _ms(r["capture_4_hooks_median_s"]),
         f"plain forward {_ms(r['forward_median_s'])}", f"{r['capture_overhead_ratio']:+.1%}", "≤ +10%"),
    ]


def estimates_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (f"memory estimate vs get_memory_footprint()+quant state ({r['rows']} loads, CPU)",
         f"worst {r['worst_footprint_err']:.4%}", "measured footprint", "–", "≤ 0.1%"),
        ("memory estimate total vs process RSS growth (idle mapped checkpoint excluded)",
         f"worst {r['worst_total_err_without_idle_mapped']:.2%}", "measured RSS", "–", "–"),
        ("the same without shared-library pages (their count is page-cache state; see notes)",
         f"worst {r['worst_private_err']:.2%}", "measured RSS", "–", "≤ 2%"),
        ("exact parameter counts of every reference config", "all exact" if r["params_exact"] else "NOT exact",
         "published counts", "–", "exact"),
    ] + ([("CPU process overhead this run (qwen2-tiny fp32 load; see notes)",
           f"{r['overhead_measured'] / 1e6:.0f} MB, of it shared libraries {r['overhead_rss_file'] / 1e6:.0f} MB",
           f"OVERHEAD_BYTES {r['overhead_constant'] / 1e6:.0f} MB", "–", "–")] if "overhead_measured" in r else [])


def server_rows(r: dict[str, Any]) -> list[Row]:
    return [(f"GET /models, {r['rows']:,} rows, p50 (p95)", f"{r['p50_ms']:.1f} ms ({r['p95_ms']:.1f} ms)",
             f"limit=50 page {r['page50_p50_ms']:.1f} ms", f"{r['p50_ms'] / r['goal_p50_ms']:.2f}× goal",
             f"≤ {r['goal_p50_ms']:.0f} ms")]


def import_rows(r: dict[str, Any]) -> list[Row]:
    return [
        ("`import mistudio_jupyter`", _ms(r["import_s"]), f"`import huggingface_hub` {_ms(r['import_peer_huggingface_hub_s'])}",
         _ratio(r["import_s"], r["import_peer_huggingface_hub_s"]), "no torch import"
         + (" ✗ torch imported" if r["torch_imported"] else " ✓")),
        ("fresh IPython + `%load_ext mistudio_jupyter`", _ms(r["load_ext_s"]), f"IPython + `%load_ext autoreload` {_ms(r['load_ext_peer_autoreload_s'])}",
         _ratio(r["load_ext_s"], r["load_ext_peer_autoreload_s"]), "–"),
    ]


def cli_startup_rows(r: dict[str, Any]) -> list[Row]:
    peer = f"`hf cache ls` {_ms(r['peer_hf_cache_ls_s'])}"
    rows = [(f"`mistudio {name}` start-up, fresh process", _ms(r[f"{name}_s"]), peer,
             _ratio(r[f"{name}_s"], r["peer_hf_cache_ls_s"]), "≤ 1× `hf cache ls`") for name in ("list", "cancel")]
    return rows + [("of it: `import sqlalchemy.orm` alone", _ms(r["sqlalchemy_orm_import_s"]), peer,
                    _ratio(r["sqlalchemy_orm_import_s"], r["peer_hf_cache_ls_s"]), "–")]


def preview_rows(r: dict[str, Any]) -> list[Row]:
    ours, peer = r["ours"], r["peer_get_safetensors_metadata"]
    return [
        (f"preview {r['repo']} ({r['shards']} shards): bytes read", f"{ours['bytes'] / 1e6:.2f} MB",
         f"get_safetensors_metadata {peer['bytes'] / 1e6:.2f} MB", _ratio(ours["bytes"], peer["bytes"]), "≈ 1 MB"),
        (f"preview {r['repo']}: time (ours includes config, memory table, fit)", f"{ours['seconds']:.2f} s",
         f"get_safetensors_metadata {peer['seconds']:.2f} s", _ratio(ours["seconds"], peer["seconds"]), "–"),
    ]


def memory_rows(r: dict[str, Any]) -> list[Row]:
    return [(f"server RSS growth during {r['downloaded_bytes'] / 1e9:.2f} GB of downloads",
             f"{r['server_peak_growth_bytes'] / 1e6:.1f} MB", f"worker peak RSS {r['worker_peak_rss_bytes'] / 1e6:.0f} MB",
             "–", f"≤ {r['goal_bytes'] / 1e6:.0f} MB")]


FORMATTERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "bench_download": download_rows, "bench_anatomy": anatomy_rows, "bench_estimates": estimates_rows,
    "bench_server": server_rows, "bench_import": import_rows, "bench_preview": preview_rows,
    "bench_server_memory": memory_rows, "bench_cli_startup": cli_startup_rows,
}


def tables_in(text: str) -> str:
    """The markdown tables a bench printed."""
    return "\n".join(line for line in text.splitlines() if line.startswith("|"))


def gpu_section() -> list[str]:
    if not GPU_LOG.exists():
        return ["No GPU log (`benchmarks/results/gpu_check_h100.log`) in this checkout."]
    text = GPU_LOG.read_text()
    summary = last_json_line(text) or {}
    lines = ["Measured earlier on an NVIDIA H100 with `benchmarks/gpu_check.py` (not re-run by `make bench`; "
             "source: `benchmarks/results/gpu_check_h100.log`).", ""]
    if summary:
        lines += [f"Worst estimate error {summary.get('worst_error_pct', 0):.2f}% (within 3%: {summary.get('within_3pct')}); "
                  f"4-bit load {summary.get('load_4bit_s', 0):.1f} s (under 60 s: {summary.get('nfr3_under_60s')}); "
                  f"fixed CUDA overhead {summary.get('overhead_bytes', 0) / 1e6:.0f} MB.", ""]
    return lines + [tables_in(text)]


def write_report(runs: list[dict[str, Any]], output: Path, total_s: float) -> None:
    info = machine()
    lines = ["# Benchmarks", "",
             f"Generated by `python -m benchmarks` (`make bench`) on {dt.date.today().isoformat()} in {total_s / 60:.1f} min. "
             "Every peer figure was measured in the same run, on the same machine.", "",
             f"**Machine:** {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB RAM, {info['os']} "
             f"({info['machine']}), Python {info['python']}; all traffic on loopback to the test Hub.", "",
             "| figure | ours | peer (same run) | ratio | goal |", "|---|---|---|---|---|"]
    for item in runs:
        result = item["result"]
        if result is None:
            lines.append(f"| {item['name']} | FAILED (exit {item['exit']}; see benchmarks/results/{item['name']}.log) "
                         "| | | |")
            continue
        formatter = FORMATTERS.get(item["name"])
        try:
            rows = formatter(result) if formatter else [(item["name"], f"`{json.dumps(result)[:200]}`", "–", "–", "–")]
        except (KeyError, TypeError, ZeroDivisionError) as error:
            rows = [(item["name"], f"unreadable result ({error!r})", "–", "–", "–")]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    estimates = next((item for item in runs if item["name"] == "bench_estimates" and item["result"]), None)
    if estimates:
        lines += ["", "## Memory estimates (CPU, `bench_estimates.py --quick`)", "", tables_in(estimates["stdout"])]
    lines += ["", "## GPU (H100)", "", *gpu_section(), "", (ROOT / "benchmarks" / "NOTES.md").read_text().strip(),
              "", "## Runs", "",
              "| bench | seconds | exit |", "|---|---|---|"]
    lines += [f"| {item['name']} | {item['seconds']:.0f} | {item['exit']} |" for item in runs]
    lines += ["", "Raw outputs: `benchmarks/results/<bench>.log`.", ""]
    output.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated bench names (e.g. bench_server,bench_import)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    benches = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {name if name.startswith("bench_") else f"bench_{name}" for name in args.only.split(",")}
        benches = [bench for bench in benches if bench.stem in wanted]
    started = time.perf_counter()
    runs = [run(bench) for bench in benches]
    total = time.perf_counter() - started
    write_report(runs, args.output, total)
    print(f"wrote {args.output} in {total / 60:.1f} min")
    return 0 if all(item["result"] is not None for item in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
