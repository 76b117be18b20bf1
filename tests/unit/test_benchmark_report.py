"""BENCHMARKS.md, its notes and the README's table come from recorded runs: the notes template quotes no
figure of its own, a run fills every placeholder, ranges span only the runs recorded on the same machine,
and the README's table is what BENCHMARKS.md says. The runs here are made of the benches' own result
builders fed with made-up measurements; only the measuring is left out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_download, bench_estimates, history, readme, report
from mistudio_jupyter.core.anatomy import sizing

ROOT = Path(__file__).resolve().parents[2]
MACHINE = {"cpu": "Test CPU", "cores": 2, "memory_gb": 8.0, "os": "Linux 6", "machine": "x86_64", "python": "3.11"}
MEASURED_FIGURE = re.compile(r"\d[\d,.]*\s*(%|×|µs|ms|s\b|[KMGT]i?B\b|GB/s)")  # a number with a unit
ACCELERATE_OUTPUT = """=== EleutherAI/pythia-70m
Loading pretrained config for `EleutherAI/pythia-70m` from `transformers`...
┌────────────────────────────────────────────────────┐
│  Memory Usage for loading `EleutherAI/pythia-70m`  │
├───────┬─────────────┬──────────┬───────────────────┤
│ dtype │Largest Layer│Total Size│Training using Adam│
├───────┼─────────────┼──────────┼───────────────────┤
│float32│   98.25 MB  │170.41 MB │     681.63 MB     │
│float16│   49.12 MB  │ 85.2 MB  │     340.81 MB     │
│  int8 │   24.56 MB  │ 42.6 MB  │        N/A        │
│  int4 │   12.28 MB  │ 21.3 MB  │        N/A        │
└───────┴─────────────┴──────────┴───────────────────┘
=== tiny/qwen2
Loading pretrained config for `tiny/qwen2` from `transformers`...
│float32│   145.0 KB  │418.31 KB │      1.63 MB      │
│float16│   72.5 KB   │209.16 KB │     836.62 KB     │
│  int8 │   36.25 KB  │104.58 KB │        N/A        │
│  int4 │   18.12 KB  │ 52.29 KB │        N/A        │
=== google/gemma-2-2b
│float32│    2.2 GB   │ 9.74 GB  │      38.96 GB     │
│float16│    1.1 GB   │ 4.87 GB  │      19.48 GB     │
│  int8 │   562.5 MB  │ 2.43 GB  │        N/A        │
│  int4 │  281.25 MB  │ 1.22 GB  │        N/A        │
=== tiny/nothing
!!! OSError: Repo for model `tiny/nothing` does not exist on the Hub.
"""


def download_result(ratio_vs_curl: float) -> dict[str, Any]:
    rounds = {
        "ours": [1.2, 1.0],
        "curl": [ratio_vs_curl],
        "hf_hub_download": [3.3],
        "curl_then_sha256": [1.74],
        "sha256_in_memory": [0.84],
        "page_cache_write": [0.3, 0.2],
    }
    return bench_download.figures(
        2**30,
        rounds,
        {"fetched_twice": 0.0039, "second_run": 0.5},
        {"fetched_twice": 0.513, "second_run": 1.0},
        {"signal": 0.031, "flag": 0.904},
    )


def estimates_result() -> dict[str, Any]:
    rows = []
    for name in ("pythia-70m", "qwen2-tiny"):
        config = bench_estimates.MODELS[name].config
        params = sizing.model_layout(config).param_count
        for option, estimate in sizing.estimate_memory(config, {}).items():
            weights = estimate.weights_bytes + estimate.quant_state_bytes
            process = 405_000_000 if option.startswith("bnb") else 400_000_000
            measured = {
                "measured": weights,
                "rss": weights + process,
                "file": 97_000_000,
                "ckpt_mapped": 0,
                "ckpt_backing": 0,
                "peak": int(estimate.peak_load_bytes * 0.9),
                "load_s": 2.0,
            }
            rows.append(bench_estimates.load_row(name, params, option, estimate, measured))
    overhead = bench_estimates.calibrate(rows)
    bench_estimates.apply_calibration(rows, overhead)
    accelerate = bench_estimates.parse_accelerate_output(ACCELERATE_OUTPUT)
    bench_estimates.add_accelerate(rows, accelerate)
    return bench_estimates.summary(rows, [], overhead, bench_estimates.accelerate_vs_gpu_log(accelerate))


def bench(name: str, result: dict[str, Any] | None, stdout: str = "") -> report.Bench:
    return {"name": name, "seconds": 10.0, "exit": 0 if result else 1, "result": result, "stdout": stdout}


@pytest.fixture(scope="module")
def benches() -> list[report.Bench]:
    return [
        bench(
            "bench_anatomy",
            {
                "arch_70b_first_s": 1.49,
                "arch_70b_warm_median_s": 0.09,
                "capture_params": 124_439_808,
                "forward_median_s": 0.153,
                "capture_4_hooks_median_s": 0.152,
                "capture_overhead_ratio": -0.006,
            },
        ),
        bench("bench_download", download_result(0.65)),
        bench("bench_estimates", estimates_result(), stdout="Loads.\n\n| model |\n|---|\n| qwen2-tiny |\n{}"),
        bench(
            "bench_server", {"rows": 1000, "p50_ms": 36.7, "p95_ms": 170.8, "page50_p50_ms": 8.3, "goal_p50_ms": 50.0}
        ),
        bench(
            "bench_team",
            {
                "sockets": 50,
                "event_p50_ms": 261.2,
                "event_p95_ms": 474.0,
                "goal_p95_ms": 1000.0,
                "users": 20,
                "entries": 1,
                "gets": 1,
                "bytes_fetched": 566_856,
                "file_size": 566_856,
            },
        ),
        bench(
            "bench_server_memory",
            {
                "downloaded_bytes": 2_150_000_000,
                "server_peak_growth_bytes": 700_000,
                "worker_peak_rss_bytes": 89_000_000,
                "goal_bytes": 50_000_000,
            },
        ),
    ]


def run_record(benches: list[report.Bench], machine: dict[str, Any] = MACHINE) -> history.Run:
    return {
        "date": "2026-12-01",
        "machine": machine,
        "total_s": 150.0,
        "benches": {b["name"]: {"exit": b["exit"], "seconds": b["seconds"], "result": b["result"]} for b in benches},
    }


def notes(benches: list[report.Bench], runs: list[history.Run]) -> str:
    return report.render_notes(report.NOTES.read_text(), benches, runs, report.GPU_LOG.read_text())


def test_the_notes_template_quotes_no_figure_of_its_own() -> None:
    template = report.NOTES.read_text()
    outside_placeholders = re.sub(r"\{[^{}]*\}", "", template)
    assert MEASURED_FIGURE.findall(outside_placeholders) == []
    assert len(report.placeholders(template)) >= 30


def test_a_full_run_fills_every_placeholder(benches: list[report.Bench]) -> None:
    text = " ".join(notes(benches, [run_record(benches)]).split())
    assert "{" not in text and report.NOT_MEASURED not in text
    assert "Fitted in this run on qwen2-tiny" in text and "applied to pythia-70m, which took no part" in text
    assert "off by -80.4% to -25.9% for 8-bit and 4-bit" in text
    assert "**Team store events**: p95 474 ms from a progress write to 50 users' sockets." in text
    assert "Writing the file alone, from memory into a new file, runs at 2.8× to 4.2× the speed of the hash" in text
    assert "in pieces of 256 KiB" in text
    assert "`accelerate estimate-memory` (this run's figures for the same repos) is off by -44.2% to -18.6%" in text


def test_a_note_whose_bench_did_not_run_is_left_out_and_a_figure_it_lacks_says_so(benches: list[report.Bench]) -> None:
    without_server = [b for b in benches if b["name"] != "bench_server"]
    assert "GET /models" not in notes(without_server, [run_record(without_server)])
    no_estimates = [b if b["name"] != "bench_estimates" else bench("bench_estimates", None) for b in benches]
    text = " ".join(notes(no_estimates, [run_record(no_estimates)]).split())
    assert "Estimate vs measured memory" not in text
    assert "**GPU** (the log's 8 loads)." in text  # its figures are the log's; accelerate's came from this bench:
    assert (
        f"`accelerate estimate-memory` (this run's figures for the same repos) is off by {report.NOT_MEASURED}" in text
    )


def test_ranges_span_the_runs_recorded_on_the_same_machine(benches: list[report.Bench], tmp_path: Path) -> None:
    runs_file = tmp_path / "runs.jsonl"
    for ratio, machine in ((0.59, MACHINE), (0.10, {**MACHINE, "cpu": "Other CPU"}), (0.87, MACHINE)):
        history.record(run_record([bench("bench_download", download_result(ratio))], machine), runs_file)
    runs = history.recorded(MACHINE, runs_file)
    assert len(runs) == 2
    text = " ".join(notes(benches, runs).split())
    assert "(0.59× to 0.87× over 2 recorded runs)" in text and "0.10×" not in text
    assert "`benchmarks/results/runs.jsonl` (2 runs, this one included)" in text


def test_the_readme_table_is_rows_of_the_report(benches: list[report.Bench], tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    report.write_report(benches, run_record(benches), [run_record(benches)], output)
    written = output.read_text()
    block = readme.table(written)
    rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    assert len(rows) >= 12 and all(row in written.splitlines() for row in rows)
    assert "From the run of 2026-12-01 (2.5 min on Test CPU, 2 cores" in block
    estimate = next(row for row in rows if row.startswith("| memory estimate vs get_memory_footprint()"))
    assert "`accelerate estimate-memory`: worst -80.4%" in estimate
    checked = next(
        row for row in rows if row.startswith("| memory estimate total vs process RSS growth, overhead fitted")
    )
    assert "fitted in this run on qwen2-tiny, checked on pythia-70m (out of sample)" in checked


def test_the_committed_readme_table_is_generated_from_the_committed_benchmarks_md() -> None:
    committed = (ROOT / "README.md").read_text()
    assert readme.update(committed, (ROOT / "BENCHMARKS.md").read_text()) == committed


def test_accelerate_estimate_memory_tables_are_read_in_bytes() -> None:
    sizes = bench_estimates.parse_accelerate_output(ACCELERATE_OUTPUT)
    assert set(sizes) == {"EleutherAI/pythia-70m", "tiny/qwen2", "google/gemma-2-2b"}
    assert sizes["EleutherAI/pythia-70m"] == {
        "float32": 170.41 * 2**20,
        "float16": 85.2 * 2**20,
        "int8": 42.6 * 2**20,
        "int4": 21.3 * 2**20,
    }
    assert sizes["tiny/qwen2"]["int4"] == 52.29 * 2**10
