"""BENCHMARKS.md from one run: the figures (each beside its peer from the same run), the tables the
estimates bench printed, the GPU figures from the log that produced them, and the notes. The notes are
benchmarks/NOTES.md with its `{placeholders}` filled from this run, or from the runs recorded on this
machine where they quote a range; NOTES.md itself holds no measured number."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import history
from .common import last_json_line

HERE = Path(__file__).resolve().parent
GPU_LOG = HERE / "results" / "gpu_check_h100.log"
GPU_SOURCE = "benchmarks/results/gpu_check_h100.log"
GPU_TABLE_HEADER = ["| figure | ours | peer | ratio | goal |", "|---|---|---|---|---|"]  # not one run: see each cell
NOTES = HERE / "NOTES.md"
NOT_MEASURED = "(not measured in this run)"

Row = tuple[str, str, str, str, str]  # figure, ours, peer, ratio, goal
Bench = dict[str, Any]  # {"name", "seconds", "exit", "result", "stdout"}


# --- the figures table ------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _ratio(ours: float, peer: float) -> str:
    return f"{ours / peer:.2f}× (lower is better)" if peer else "–"


def download_rows(r: dict[str, Any]) -> list[Row]:
    gbps, kill, cancel = r["gbps"], r["refetched_after_kill_at_half"], r["cancel_latency_s"]
    size = f"{r['file_bytes'] / 2**30:.2f} GiB"
    return [
        (
            f"download {size}, loopback: throughput",
            f"{gbps['ours']:.2f} GB/s",
            f"curl {gbps['curl']:.2f} GB/s",
            f"{r['ratio_vs_curl']:.2f}× curl",
            "–",
        ),
        (
            f"download {size}: throughput",
            f"{gbps['ours']:.2f} GB/s",
            f"hf_hub_download {gbps['hf_hub_download']:.2f} GB/s",
            f"{r['ratio_vs_hf_hub_download']:.2f}× hf_hub_download",
            "≥ 1.5×",
        ),
        (
            f"download {size}, sha256-verified: throughput",
            f"{gbps['ours']:.2f} GB/s",
            f"curl then openssl sha256 {gbps['curl_then_sha256']:.2f} GB/s",
            f"{r['ratio_vs_curl_then_sha256']:.2f}× verified curl",
            "–",
        ),
        (
            "ceiling of a sha256-verified download here: sha256 alone, in memory",
            f"ours at {r['ratio_vs_sha256_ceiling']:.0%} of it",
            f"sha256 {gbps['sha256_in_memory']:.2f} GB/s",
            f"ceiling {r['sha256_ceiling_vs_curl']:.2f}× curl",
            "ours ≥ 90% of it",
        ),
        (
            f"the write every download does: {size} from memory into a new file, alone",
            f"{gbps['page_cache_write']:.2f} GB/s",
            f"sha256 {gbps['sha256_in_memory']:.2f} GB/s",
            f"{r['page_cache_write_vs_sha256']['slowest']:.1f}× to {r['page_cache_write_vs_sha256']['fastest']:.1f}× "
            "the hash's speed (slowest, fastest round)",
            "–",
        ),
        (
            "bytes fetched twice after SIGKILL at 50%",
            f"{kill['ours']['fetched_twice']:.2%}",
            f"hf_hub_download {kill['hf_hub_download']['fetched_twice']:.1%}",
            "–",
            "≤ 1%",
        ),
        (
            "cancel latency (signal / catalog flag)",
            f"{_ms(cancel['signal'])} / {_ms(cancel['flag'])}",
            "hf_hub_download: no cancel",
            "–",
            "≤ 1 s",
        ),
    ]


def anatomy_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            "Llama-3-70B architecture + hooks (meta device)",
            f"first {r['arch_70b_first_s']:.2f} s, warm {r['arch_70b_warm_median_s']:.2f} s",
            "–",
            "–",
            "≤ 1 s",
        ),
        (
            f"capture 4 hooks, {r['capture_params'] / 1e6:.0f}M-param forward",
            _ms(r["capture_4_hooks_median_s"]),
            f"not a peer: the plain forward of the same model, {_ms(r['forward_median_s'])}",
            f"{r['capture_overhead_ratio']:+.1%}",
            "≤ +10%",
        ),
    ]


def estimates_rows(r: dict[str, Any]) -> list[Row]:
    errors = [error for option_errors in r["accelerate_err"].values() for error in option_errors]
    peer = f"`accelerate estimate-memory`: worst {max(errors, key=abs):+.1%}" if errors else "–"
    if "api" in r["accelerate_via"]:
        peer += " (its Python API for configs no Hub serves)"
    calibrated = r["worst_total_err_calibrated_out_of_sample"]
    return [
        (
            f"memory estimate vs get_memory_footprint()+quant state ({r['rows']} loads, CPU)",
            f"worst {r['worst_footprint_err']:.4%}",
            peer,
            "–",
            "≤ 0.1%",
        ),
        (
            "memory estimate total vs process RSS growth, shipped OVERHEAD_BYTES (not fitted to this run)",
            f"worst {r['worst_total_err_shipped']:.2%}",
            "measured RSS",
            "–",
            "–",
        ),
        (
            f"memory estimate total vs process RSS growth, overhead fitted in this run on "
            f"{', '.join(r['calibration_models'])}, checked on {', '.join(r['validation_models']) or 'no other model'} "
            "(out of sample)",
            f"worst {calibrated:.2%}" if calibrated is not None else "no model to check on",
            "measured RSS",
            "–",
            "≤ 2%",
        ),
        (
            "exact parameter counts of every reference config",
            "all exact" if r["params_exact"] else "NOT exact",
            "published counts",
            "–",
            "exact",
        ),
    ]


def server_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"GET /models, {r['rows']:,} rows, p50 (p95)",
            f"{r['p50_ms']:.1f} ms ({r['p95_ms']:.1f} ms)",
            f"not a peer: our own limit=50 page, {r['page50_p50_ms']:.1f} ms",
            f"{r['p50_ms'] / r['goal_p50_ms']:.2f}× goal",
            f"≤ {r['goal_p50_ms']:.0f} ms",
        )
    ]


def server_postgres_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"GET /models on PostgreSQL, {r['rows']:,} rows, p50 (p95)",
            f"{r['p50_ms']:.1f} ms ({r['p95_ms']:.1f} ms)",
            f"the same rows on SQLite {r['sqlite_p50_ms']:.1f} ms",
            _ratio(r["p50_ms"], r["sqlite_p50_ms"]),
            f"≤ {r['goal_p50_ms']:.0f} ms",
        )
    ]


def team_rows(r: dict[str, Any]) -> list[Row]:
    single = r["entries"] == 1 and r["gets"] == 1 and r["bytes_fetched"] == r["file_size"]
    return [
        (
            f"Team store: progress write → {r['sockets']} users' sockets, p50 (p95)",
            f"{r['event_p50_ms']:.0f} ms ({r['event_p95_ms']:.0f} ms)",
            "no peer: against the goal",
            f"{r['event_p95_ms'] / r['goal_p95_ms']:.2f}× goal",
            f"p95 ≤ {r['goal_p95_ms'] / 1000:.0f} s",
        ),
        (
            f"Team store: {r['users']} users ask for one new repo at once",
            f"{'one transfer' if single else 'MORE THAN ONE TRANSFER'}: {r['entries']} entry, {r['gets']} GET, "
            f"{r['bytes_fetched']:,} of {r['file_size']:,} bytes",
            "–",
            "–",
            "exactly one transfer",
        ),
    ]


def import_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            "`import mistudio_jupyter`",
            _ms(r["import_s"]),
            f"`import huggingface_hub` {_ms(r['import_peer_huggingface_hub_s'])}",
            _ratio(r["import_s"], r["import_peer_huggingface_hub_s"]),
            "no torch import" + (" ✗ torch imported" if r["torch_imported"] else " ✓"),
        ),
        (
            "fresh IPython + `%load_ext mistudio_jupyter`",
            _ms(r["load_ext_s"]),
            f"IPython + `%load_ext autoreload` {_ms(r['load_ext_peer_autoreload_s'])}",
            _ratio(r["load_ext_s"], r["load_ext_peer_autoreload_s"]),
            "–",
        ),
    ]


def preview_rows(r: dict[str, Any]) -> list[Row]:
    ours, peer = r["ours"], r["peer_get_safetensors_metadata"]
    return [
        (
            f"preview {r['repo']} ({r['shards']} shards): bytes read",
            f"{ours['bytes'] / 1e6:.2f} MB",
            f"get_safetensors_metadata {peer['bytes'] / 1e6:.2f} MB",
            _ratio(ours["bytes"], peer["bytes"]),
            "≈ 1 MB",
        ),
        (
            f"preview {r['repo']}: time (ours includes config, memory table, fit)",
            f"{ours['seconds']:.2f} s",
            f"get_safetensors_metadata {peer['seconds']:.2f} s",
            _ratio(ours["seconds"], peer["seconds"]),
            "–",
        ),
    ]


def memory_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"server RSS growth during {r['downloaded_bytes'] / 1e9:.2f} GB of downloads",
            f"{r['server_peak_growth_bytes'] / 1e6:.1f} MB",
            f"not a peer: the download worker it starts, peak RSS {r['worker_peak_rss_bytes'] / 1e6:.0f} MB",
            "–",
            f"≤ {r['goal_bytes'] / 1e6:.0f} MB",
        )
    ]


def cli_startup_rows(r: dict[str, Any]) -> list[Row]:
    peer = f"`hf cache ls` {_ms(r['peer_hf_cache_ls_s'])}"
    rows = [
        (
            f"`mistudio {name}` start-up, fresh process",
            _ms(r[f"{name}_s"]),
            peer,
            _ratio(r[f"{name}_s"], r["peer_hf_cache_ls_s"]),
            "≤ 1× `hf cache ls`",
        )
        for name in ("list", "cancel")
    ]
    return rows + [
        (
            "of it: the interpreter's start-up, `python -c pass`",
            _ms(r["python_startup_s"]),
            f"not a peer: {peer}",
            _ratio(r["python_startup_s"], r["peer_hf_cache_ls_s"]),
            "–",
        )
    ]


def _wan_speed(result: dict[str, Any]) -> str:
    if "failed" in result:
        return "FAILED"
    return f"{result['mbps']:.1f} MB/s" + ("" if result["identical"] else " ✗ not byte-identical")


def wan_rows(r: dict[str, Any]) -> list[Row]:
    wan = r["wan"]
    network = (
        f"{wan['per_conn_bps'] / 1e6:g} MB/s per connection, {wan['link_bps'] / 1e6:g} MB/s link, "
        f"{wan['rtt_ms']:g} ms RTT"
    )
    ceiling = r["ceiling"]
    rows: list[Row] = [
        (
            f"WAN ({network}): the test Hub's own ceiling, one curl with 16 ranges",
            f"{ceiling['mbps']:.1f} MB/s",
            "not a peer: the server's limit",
            f"{ceiling['link_share']:.0%} of the link",
            "–",
        )
    ]
    for name, w in r["workloads"].items():
        ours = w["tools"]["ours"]
        runs = len(ours.get("runs_s", ()))
        median = f", median of {runs} runs" if runs > 1 else ""
        figure = f"WAN download, {name} ({w['files']} files, {w['bytes'] / 1e6:.0f} MB{median}): throughput"
        mine = _wan_speed(ours) + (f" ({ours['link_share']:.0%} of the link)" if "mbps" in ours else "")
        rows += [
            (
                figure,
                mine,
                f"{peer} {_wan_speed(w['tools'][peer])}",
                f"{w['ours_vs'][peer]:.2f}× {peer}" if peer in w["ours_vs"] else "–",
                "≥ 0.9 of the link, ahead of every peer",
            )
            for peer in ("snapshot_download", "hf_transfer", "aria2c")
        ]
        if "startup_s" in ours and "startup_s" in w["tools"]["aria2c"]:
            rows.append(
                (
                    f"WAN download, {name}: start-up (to the first request for LFS bytes), then share of the link",
                    _wan_phases(ours),
                    f"aria2c {_wan_phases(w['tools']['aria2c'])}",
                    "–",
                    "–",
                )
            )
    return rows


def _wan_phases(result: dict[str, Any]) -> str:
    return f"{result['startup_s']:.2f} s, then {result['link_share_after_startup']:.0%}"


FORMATTERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "bench_download": download_rows,
    "bench_anatomy": anatomy_rows,
    "bench_estimates": estimates_rows,
    "bench_server": server_rows,
    "bench_server_postgres": server_postgres_rows,
    "bench_team": team_rows,
    "bench_import": import_rows,
    "bench_preview": preview_rows,
    "bench_server_memory": memory_rows,
    "bench_wan": wan_rows,
    "bench_cli_startup": cli_startup_rows,
}
TABLE_HEADER = ["| figure | ours | peer (same run) | ratio | goal |", "|---|---|---|---|---|"]


def bench_rows(bench: Bench) -> list[Row]:
    """The table rows of one bench's result (a failure row when it has none)."""
    name, result = bench["name"], bench["result"]
    if result is None:
        return [(name, f"FAILED (exit {bench['exit']}; see benchmarks/results/{name}.log)", "", "", "")]
    formatter = FORMATTERS.get(name)
    try:
        return formatter(result) if formatter else [(name, f"`{json.dumps(result)[:200]}`", "–", "–", "–")]
    except (KeyError, TypeError, ZeroDivisionError, ValueError) as error:
        return [(name, f"unreadable result ({error!r})", "–", "–", "–")]


def table_line(row: Row) -> str:
    return "| " + " | ".join(row) + " |"


def tables_in(text: str) -> str:
    """The markdown tables a bench printed, each with the one-line paragraph that introduces it, if any."""
    blocks = [block.splitlines() for block in text.split("\n\n")]
    kept = []
    for before, block in zip([[]] + blocks, blocks):
        table = [line for line in block if line.startswith("|")]
        if not table:
            continue
        if len(before) == 1 and not before[0].startswith(("|", "{")):
            kept.append(before[0])
        kept.append("\n".join(table))
    return "\n\n".join(kept)


# --- GPU: the log of an earlier run ---------------------------------------------------------------


def gpu_log_rows(text: str) -> list[dict[str, Any]]:
    """The per-load results `gpu_check.py` printed (its JSON lines with a model)."""
    rows = []
    for line in text.splitlines():
        if line.startswith('{"model"'):
            rows.append(json.loads(line))
    return rows


def gpu_summary_rows(text: str, estimates: dict[str, Any] | None) -> list[Row]:
    """The GPU figures of the log, in the figures table's columns; beside them, where this run's estimates
    bench compared them, accelerate's estimates for the same repos."""
    summary, rows = last_json_line(text) or {}, gpu_log_rows(text)
    if not rows:
        return []
    models = sorted({row["model"] for row in rows})
    errors = [row["err"] for row in (estimates or {}).get("gpu_log_accelerate", [])]
    peer = (
        f"`accelerate estimate-memory` (this run) vs the same memory_allocated: worst {max(errors, key=abs):+.1%}"
        if errors
        else "–"
    )
    largest_four_bit = max(
        (row for row in rows if row["option"] == "bnb-4bit"), key=lambda row: row["params"], default=None
    )
    return [
        (
            f"memory estimate vs CUDA memory_allocated, {len(rows)} loads of {', '.join(models)} "
            f"(H100, {GPU_LOG.name})",
            f"worst {summary.get('worst_error_pct', max(abs(row['error_pct']) for row in rows)):.2f}%",
            peer,
            "–",
            "≤ 3%",
        ),
    ] + (
        [
            (
                f"4-bit load of {largest_four_bit['model']} (H100, {GPU_LOG.name})",
                f"{largest_four_bit['load_s']:.1f} s",
                "–",
                "–",
                "< 60 s",
            )
        ]
        if largest_four_bit
        else []
    )


def gpu_section(text: str | None, estimates: dict[str, Any] | None) -> list[str]:
    if text is None:
        return [f"No GPU log ({GPU_SOURCE}) in this checkout."]
    summary = last_json_line(text) or {}
    lines = [
        f"Measured earlier on an NVIDIA H100 with `benchmarks/gpu_check.py` (not re-run by `make bench`); every "
        f"figure here is from `{GPU_SOURCE}`, except accelerate's, computed for the same repos by this run's "
        "estimates bench.",
        "",
        *GPU_TABLE_HEADER,
        *map(table_line, gpu_summary_rows(text, estimates)),
        "",
    ]
    if summary:
        lines += [
            f"The CUDA overhead, {summary.get('overhead_bytes', 0) / 1e6:.0f} MB, is the same in all "
            f"{len(gpu_log_rows(text))} loads; `OVERHEAD_BYTES['cuda']` was set from them (in sample).",
            "",
        ]
    return lines + [tables_in(text)]


# --- the notes ---------------------------------------------------------------------------------


def _pct(value: float, signed: bool = False) -> str:
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _times(value: float) -> str:
    return f"{value:.2f}×"


def _mb(value: float) -> str:
    return f"{value / 1e6:.0f} MB"


def _mib(value: float) -> str:
    return f"{value / 2**20:g} MiB"


def _kib(value: float) -> str:
    return f"{value / 2**10:g} KiB"


def span(values: list[float], show: Callable[[float], str]) -> str:
    """The range of `values` over the recorded runs, e.g. "0.59–0.87× over 7 runs"."""
    if not values:
        return "no recorded run"
    low, high = show(min(values)), show(max(values))
    runs = f"{len(values)} recorded run{'s' if len(values) > 1 else ''}"
    return f"{low} in {runs}" if low == high else f"{low} to {high} over {runs}"


def _extent(values: list[float], show: Callable[[float], str]) -> str:
    """The extent of `values` within this run, e.g. "−80.4% to −36.6%"."""
    if not values:
        return NOT_MEASURED
    low, high = show(min(values)), show(max(values))
    return low if low == high else f"{low} to {high}"


def download_figures(r: dict[str, Any], runs: list[history.Run]) -> dict[str, str]:
    def ranged(pick: Callable[[dict[str, Any]], float], show: Callable[[float], str]) -> str:
        return span(history.values(runs, "bench_download", pick), show)

    engine = r["engine"]
    return {
        "ceiling_vs_curl": _times(r["sha256_ceiling_vs_curl"]),
        "ceiling_vs_curl_range": ranged(lambda x: x["sha256_ceiling_vs_curl"], _times),
        "ours_of_ceiling": f"{r['ratio_vs_sha256_ceiling']:.0%}",
        "ours_of_ceiling_range": ranged(lambda x: x["ratio_vs_sha256_ceiling"], lambda v: f"{v:.0%}"),
        "ours_vs_curl": _times(r["ratio_vs_curl"]),
        "ours_vs_curl_range": ranged(lambda x: x["ratio_vs_curl"], _times),
        "ours_vs_verified_curl": _times(r["ratio_vs_curl_then_sha256"]),
        "ours_vs_verified_curl_range": ranged(lambda x: x["ratio_vs_curl_then_sha256"], _times),
        "block_size": _mib(engine["block_bytes"]),
        "write_piece": _kib(engine["write_piece_bytes"]),
        "write_vs_sha256": _extent(
            [r["page_cache_write_vs_sha256"][key] for key in ("slowest", "fastest")], lambda v: f"{v:.1f}×"
        ),
        "refetch_ours": f"{r['refetched_after_kill_at_half']['ours']['fetched_twice']:.2%}",
        "refetch_ours_range": ranged(
            lambda x: x["refetched_after_kill_at_half"]["ours"]["fetched_twice"], lambda v: f"{v:.2%}"
        ),
        "tcp_rmem_max": _mib(engine["tcp_rmem_max_bytes"]) if engine["tcp_rmem_max_bytes"] else "unknown",
        "chunk_size": _mib(engine["chunk_bytes"]),
        "connections": f"{engine['start_connections']} to {engine['max_connections']}",
        "flush_after": f"{engine['flush_after_s'] * 1000:.0f} ms",
        "settled": "an `os.sync()` and a dropped page cache" if r.get("page_cache_dropped") else "an `os.sync()`",
    }


def anatomy_figures(r: dict[str, Any], runs: list[history.Run]) -> dict[str, str]:
    return {
        "arch_first": f"{r['arch_70b_first_s']:.2f} s",
        "arch_warm": f"{r['arch_70b_warm_median_s']:.2f} s",
        "capture_overhead": _pct(r["capture_overhead_ratio"], signed=True),
        "capture_overhead_range": span(
            history.values(runs, "bench_anatomy", lambda x: x["capture_overhead_ratio"]), lambda v: _pct(v, signed=True)
        ),
    }


def estimates_figures(r: dict[str, Any], runs: list[history.Run]) -> dict[str, str]:
    quantized = [e for option in ("bnb-8bit", "bnb-4bit", "bnb-4bit-dq") for e in r["accelerate_err"].get(option, [])]
    plain = [e for option in ("fp32", "fp16", "bf16") for e in r["accelerate_err"].get(option, [])]
    overhead = r["overhead_calibrated"]
    worst = r["worst_total_err_calibrated_out_of_sample"]
    return {
        "worst_footprint_err": f"{r['worst_footprint_err']:.4%}",
        "accelerate_quantized": _extent(quantized, lambda v: _pct(v, signed=True)),
        "accelerate_plain": _extent(plain, lambda v: _pct(v, signed=True)),
        "accelerate_how": (
            "its CLI against the test Hub"
            if r["accelerate_via"] == ["cli"]
            else "its CLI against the test Hub, and its Python API for the configs no Hub serves"
        ),
        "overhead_shipped": " / ".join(_mb(r["overhead_shipped"][k]) for k in ("plain", "bnb")),
        "shipped_err_range": _extent(r["total_err_shipped_range"], lambda v: _pct(v, signed=True)),
        "rss_file_calibration": " / ".join(_mb(v) for v in r["rss_file_calibration"].values()) or NOT_MEASURED,
        "calibration_models": ", ".join(r["calibration_models"]) or NOT_MEASURED,
        "overhead_calibrated": " / ".join(_mb(v) for v in overhead.values()) or NOT_MEASURED,
        "validation_models": ", ".join(r["validation_models"]) or "no model",
        "worst_calibrated": f"{worst:.2%}" if worst is not None else NOT_MEASURED,
        "worst_calibrated_range": span(
            history.values(runs, "bench_estimates", lambda x: x["worst_total_err_calibrated_out_of_sample"]),
            lambda v: f"{v:.2%}",
        ),
        "gpu_accelerate_quantized": _extent(
            [g["err"] for g in r["gpu_log_accelerate"] if g["option"].startswith("bnb")], lambda v: _pct(v, signed=True)
        ),
        "peak_plain": _extent(r["peak_over_estimate"]["plain"], lambda v: f"{v:.0%}"),
        "peak_bnb": _extent(r["peak_over_estimate"]["bnb"], lambda v: f"{v:.0%}"),
    }


def server_figures(r: dict[str, Any], runs: list[history.Run]) -> dict[str, str]:
    return {
        "list_rows": f"{r['rows']:,}",
        "list_p50": f"{r['p50_ms']:.1f} ms",
        "page_p50": f"{r['page50_p50_ms']:.1f} ms",
        "list_p50_range": span(history.values(runs, "bench_server", lambda x: x["p50_ms"]), lambda v: f"{v:.1f} ms"),
    }


def server_postgres_figures(r: dict[str, Any], runs: list[history.Run]) -> dict[str, str]:
    return {
        "pg_list_rows": f"{r['rows']:,}",
        "pg_list_p50": f"{r['p50_ms']:.1f} ms",
        "pg_sqlite_p50": f"{r['sqlite_p50_ms']:.1f} ms",
        "pg_list_size": f"{r['bytes'] / 1e6:.1f} MB",
    }


def team_figures(r: dict[str, Any], runs: list[history.Run]) -> dict[str, str]:
    return {"team_sockets": str(r["sockets"]), "team_event_p95": f"{r['event_p95_ms']:.0f} ms"}


def server_memory_figures(r: dict[str, Any], runs: list[history.Run]) -> dict[str, str]:
    return {
        "server_growth": f"{r['server_peak_growth_bytes'] / 1e6:.1f} MB",
        "downloaded": f"{r['downloaded_bytes'] / 1e9:.2f} GB",
        "worker_peak": _mb(r["worker_peak_rss_bytes"]),
    }


def gpu_figures(text: str | None) -> dict[str, str]:
    rows = gpu_log_rows(text or "")
    if not rows:
        return {}
    excess = max(rows, key=lambda row: row["allocated"] - row["measured"])
    peak = max(row["peak_allocated"] / row["estimate"] for row in rows)
    return {
        "gpu_loads": str(len(rows)),
        "gpu_worst_err": f"{max(abs(row['error_pct']) for row in rows):.2f}%",
        "gpu_worst_excess": f"{(excess['allocated'] - excess['measured']) / 1e6:.1f} MB",
        "gpu_worst_excess_load": f"{excess['model']} {excess['option']}",
        "gpu_peak": _pct(peak - 1),
    }


def cli_startup_figures(r: dict[str, Any], runs: list[history.Run]) -> dict[str, str]:
    return {"python_share_of_list": _pct(r["python_startup_s"] / r["list_s"])}


def wan_figures(r: dict[str, Any], runs: list[history.Run]) -> dict[str, str]:
    ours = {name: w["tools"]["ours"] for name, w in r["workloads"].items()}
    startups = [tool["startup_s"] for tool in ours.values()]
    after = [ours[name]["link_share_after_startup"] for name in ("one-file", "shards") if name in ours]
    return {
        "wan_startup_ours": f"{min(startups):.2f}–{max(startups):.2f} s",
        "wan_after_startup_ours": f"{min(after):.0%}–{max(after):.0%}",
    }


FIGURES: dict[str, Callable[[dict[str, Any], list[history.Run]], dict[str, str]]] = {
    "bench_download": download_figures,
    "bench_anatomy": anatomy_figures,
    "bench_estimates": estimates_figures,
    "bench_server": server_figures,
    "bench_server_postgres": server_postgres_figures,
    "bench_team": team_figures,
    "bench_server_memory": server_memory_figures,
    "bench_cli_startup": cli_startup_figures,
    "bench_wan": wan_figures,
}


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def render_notes(template: str, benches: list[Bench], runs: list[history.Run], gpu_log: str | None) -> str:
    """The notes with every placeholder filled from this run, the recorded runs or the GPU log. A note
    none of whose figures this run has (its bench did not run, or failed) is left out; a figure missing
    from a note that stays says so."""
    figures: dict[str, str] = {
        "recorded_runs": f"{len(runs)} run{'s' if len(runs) != 1 else ''}",
        **gpu_figures(gpu_log),
    }
    for bench in benches:
        if bench["result"] is not None and bench["name"] in FIGURES:
            try:
                figures.update(FIGURES[bench["name"]](bench["result"], runs))
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                continue  # an unreadable result: its placeholders say "not measured"
    notes = [
        note for note in re.split(r"\n(?=- )", template) if not placeholders(note) or placeholders(note) & set(figures)
    ]
    return "\n".join(notes).format_map({name: figures.get(name, NOT_MEASURED) for name in placeholders(template)})


# --- the file ----------------------------------------------------------------------------------


def write_report(benches: list[Bench], run: history.Run, runs: list[history.Run], output: Path) -> None:
    """BENCHMARKS.md for this run; `runs` are the recorded runs on this machine, this one included."""
    info = run["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python -m benchmarks` (`make bench`) on {run['date']} in {run['total_s'] / 60:.1f} min. "
        "Every peer figure was measured in the same run, on the same machine; a figure that is not a peer "
        "says so. The run is recorded in `benchmarks/results/runs.jsonl`.",
        "",
        f"**Machine:** {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB RAM, {info['os']} "
        f"({info['machine']}), Python {info['python']}; all traffic on loopback to the test Hub.",
        "",
        *TABLE_HEADER,
    ]
    lines += [table_line(row) for bench in benches for row in bench_rows(bench)]
    estimates = next((bench for bench in benches if bench["name"] == "bench_estimates" and bench["result"]), None)
    if estimates:
        lines += ["", "## Memory estimates (CPU, `bench_estimates.py --quick`)", "", tables_in(estimates["stdout"])]
    wan = next((bench for bench in benches if bench["name"] == "bench_wan" and bench["result"]), None)
    if wan:
        lines += ["", "## Downloads over a simulated WAN (`bench_wan.py`)", "", tables_in(wan["stdout"])]
    gpu_log = GPU_LOG.read_text() if GPU_LOG.exists() else None
    lines += [
        "",
        "## GPU (H100)",
        "",
        *gpu_section(gpu_log, estimates["result"] if estimates else None),
        "",
        render_notes(NOTES.read_text(), benches, runs, gpu_log).strip(),
        "",
        "## Runs",
        "",
        "| bench | seconds | exit |",
        "|---|---|---|",
    ]
    lines += [f"| {bench['name']} | {bench['seconds']:.0f} | {bench['exit']} |" for bench in benches]
    lines += ["", "Raw outputs: `benchmarks/results/<bench>.log`.", ""]
    output.write_text("\n".join(lines))
