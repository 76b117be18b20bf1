"""Accuracy of the memory estimates on CPU, against `accelerate estimate-memory` in the same run, and the
full-size estimate table.

For models of several families built from configs with random weights, every option is loaded in a
fresh process and compared with (a) get_memory_footprint() + the bitsandbytes quantization state,
counted from bitsandbytes' objects (goal ≤ 0.1%), next to what `accelerate estimate-memory` says for the
same model and dtype; and (b) the process's resident-memory growth from interpreter start to loaded
model with every weight page touched. For (b) the estimate adds a fixed process overhead: once with the
shipped `sizing.OVERHEAD_BYTES`, fitted earlier and not to this run, and once with the overhead this run
measures on the calibration models (weights negligible), applied to the other models, which play no
part in it (goal: within 2% out of sample). Then the estimate table of every config in
model_shapes.json with exact parameter counts, and accelerate's figures for the same repos.

accelerate runs as its users run it: its CLI entry point against the test Hub, which serves these
configs; for a model the Hub does not serve, its Python API does the same arithmetic on the same config.
Prints markdown tables and one final JSON line.

    .venv/bin/python benchmarks/bench_estimates.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import ENV  # noqa: E402
from mistudio_jupyter.core.anatomy import sizing  # noqa: E402
from mistudio_jupyter.core.snapshot import local_tensors  # noqa: E402
from tests.tiny_configs import TINY_CONFIGS  # noqa: E402

SHAPES = json.loads((ROOT / "tests" / "hubserver" / "model_shapes.json").read_text())["models"]
GPU_LOG = ROOT / "benchmarks" / "results" / "gpu_check_h100.log"
_DECODER = {"vocab_size": 32000, "max_position_embeddings": 2048, "tie_word_embeddings": False}


@dataclasses.dataclass(frozen=True)
class BenchModel:
    config: dict[str, Any]
    checkpoint_dtype: str
    hub_repo: str | None  # the test Hub repo of the same config, for `accelerate estimate-memory`


MODELS: dict[str, BenchModel] = {
    "gpt2-124M": BenchModel(SHAPES["gpt2"]["config"], "float32", "gpt2"),
    "llama-125M": BenchModel(
        {
            "model_type": "llama",
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "num_key_value_heads": 4,
            "intermediate_size": 2048,
            **_DECODER,
        },
        "bfloat16",
        None,
    ),
    "pythia-70m": BenchModel(SHAPES["EleutherAI/pythia-70m"]["config"], "float16", "EleutherAI/pythia-70m"),
    "gemma2-40M": BenchModel(
        {
            "model_type": "gemma2",
            "hidden_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "intermediate_size": 1024,
            "vocab_size": 128000,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": True,
        },
        "bfloat16",
        None,
    ),
    "qwen2-tiny": BenchModel(TINY_CONFIGS["qwen2"], "float32", "tiny/qwen2"),
}
QUICK = ("pythia-70m", "qwen2-tiny")
CALIBRATION_MODELS = ("qwen2-tiny",)  # ~0.1M parameters: what its load adds to RSS is the process overhead
LOADS = {
    "fp32": {"dtype": "float32"},
    "fp16": {"dtype": "float16"},
    "bf16": {"dtype": "bfloat16"},
    "bnb-8bit": {"quantization": "bnb-8bit"},
    "bnb-4bit": {"quantization": "bnb-4bit"},
    "bnb-4bit-dq": {"quantization": "bnb-4bit", "double_quant": True},
}
ACCELERATE_DTYPE = {
    "fp32": "float32",
    "fp16": "float16",
    "bf16": "float16",
    "bnb-8bit": "int8",
    "bnb-4bit": "int4",
    "bnb-4bit-dq": "int4",
}

# Runs in a fresh interpreter: RSS at start, load, touch every page of every tensor, RSS again.
CHILD = r"""
import gc, json, sys, time
def status():
    return {l.split(':')[0]: int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.split(':')[0] in
            ('VmRSS', 'RssAnon', 'RssFile', 'VmHWM')}
start = status()
import torch
from mistudio_jupyter.core.loading import load_model
from tests.bnb_state import footprint_plus_quant_state, quant_state_tensors
path, arguments = sys.argv[1], json.loads(sys.argv[2])
loaded = load_model(path, device_map='cpu', **arguments)
model = loaded.model
total = 0
for tensor in [*model.parameters(), *model.buffers(), *quant_state_tensors(model)]:
    flat = tensor.detach().reshape(-1)
    total += int(flat.view(torch.uint8)[::4096].sum()) if flat.numel() else 0
gc.collect()
end = status()
# resident checkpoint pages, and how many of them back a parameter (same-dtype tensors stay mmap views)
mapped, ranges, current = 0, [], ''
for line in open('/proc/self/smaps').read().splitlines():
    if not line[:1].isupper():
        current = line
        if line.endswith('.safetensors'):
            ranges.append([int(x, 16) for x in line.split()[0].split('-')])
    elif line.startswith('Rss:') and current.endswith('.safetensors'):
        mapped += int(line.split()[1]) * 1024
backed = sum(t.numel() * t.element_size() for t in {p.data_ptr(): p for p in model.parameters()}.values()
             if any(lo <= t.data_ptr() < hi for lo, hi in ranges))
print(json.dumps({'measured': footprint_plus_quant_state(model), 'rss': end['VmRSS'] - start['VmRSS'],
                  'anon': end['RssAnon'] - start['RssAnon'], 'file': end['RssFile'] - start['RssFile'],
                  'peak': end['VmHWM'] - start['VmRSS'], 'ckpt_mapped': mapped, 'ckpt_backing': backed,
                  'load_s': loaded.load_time_s}))
"""

# `accelerate estimate-memory REPO --library_name transformers` for each repo, through accelerate's CLI
# entry point in one interpreter (one torch import for all of them instead of one per repo).
ACCELERATE_CLI = r"""
import sys
from accelerate.commands.accelerate_cli import main
for repo in sys.argv[1:]:
    print(f"=== {repo}", flush=True)
    sys.argv = ["accelerate", "estimate-memory", repo, "--library_name", "transformers"]
    try:
        main()
    except Exception as error:
        print(f"!!! {type(error).__name__}: {error}", flush=True)
"""

# What estimate-memory computes (accelerate.commands.estimate.create_empty_model + gather_data) for a
# config that is on no Hub: an fp32 AutoModel on the meta device, halved per step down to int4.
ACCELERATE_API = r"""
import json, sys, torch
from accelerate import init_empty_weights
from accelerate.utils import calculate_maximum_sizes
from transformers import AutoConfig, AutoModel
sizes = {}
for name, config in json.loads(sys.argv[1]).items():
    hf_config = AutoConfig.for_model(config.pop("model_type"), **config)
    with init_empty_weights():
        model = AutoModel.from_config(hf_config, torch_dtype=torch.float32)
    total, _ = calculate_maximum_sizes(model)
    sizes[name] = {"float32": total, "float16": total / 2, "int8": total / 4, "int4": total / 8}
print(json.dumps(sizes))
"""
_UNITS = {"bytes": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40, "PB": 2**50}
_CLI_ROW = re.compile(r"│\s*(float32|float16|int8|int4)\s*│[^│]*│\s*([\d.]+) (bytes|KB|MB|GB|TB|PB)\s*│")


def build(name: str, model: BenchModel, root: Path) -> Path:
    """Save a random-weight model of `model.config` in its checkpoint dtype under root/name (once)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    target = root / name
    if not (target / "config.json").exists():
        options = {key: value for key, value in model.config.items() if key != "model_type"}
        hf_config = AutoConfig.for_model(model.config["model_type"], **options)
        with torch.device("cpu"):
            built = AutoModelForCausalLM.from_config(hf_config, dtype=getattr(torch, model.checkpoint_dtype))
        built.save_pretrained(target)
    return target


def headers(directory: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (info.dtype, info.shape) for name, info in local_tensors(directory).items()}


def measure(directory: Path, arguments: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def relative(estimate: float, measured: float) -> float:
    return (estimate - measured) / measured if measured else math.inf


def kind(option: str) -> str:
    """The overhead class of a load option: bitsandbytes' or plain."""
    return "bnb" if option.startswith("bnb") else "plain"


def accuracy_rows(names: list[str], root: Path) -> list[dict[str, Any]]:
    """One row per model and option: the estimate against the measured load."""
    rows = []
    for name in names:
        directory = build(name, MODELS[name], root)
        saved_config = json.loads((directory / "config.json").read_text())
        estimates = sizing.estimate_memory(saved_config, headers(directory))
        params = sizing.model_layout(saved_config).param_count
        for option, arguments in LOADS.items():
            rows.append(load_row(name, params, option, estimates[option], measure(directory, arguments)))
            print(
                f"  {name} {option}: footprint err {rows[-1]['err_footprint']:+.4%}, total err with the shipped "
                f"overhead {rows[-1]['err_total_shipped']:+.2%}",
                file=sys.stderr,
                flush=True,
            )
    return rows


def load_row(
    name: str, params: int, option: str, estimate: sizing.MemoryEstimate, got: dict[str, Any]
) -> dict[str, Any]:
    """The estimate of one load beside what CHILD measured of it (`got`)."""
    weights = estimate.weights_bytes + estimate.quant_state_bytes
    idle_mapped = max(0, got["ckpt_mapped"] - got["ckpt_backing"])  # clean page cache the kernel can drop
    return {
        "model": name,
        "params": params,
        "checkpoint": MODELS[name].checkpoint_dtype,
        "option": option,
        "role": "calibration" if name in CALIBRATION_MODELS else "validation",
        "estimate_weights": weights,
        "footprint_plus_state": got["measured"],
        "err_footprint": relative(weights, got["measured"]),
        "estimate_total_shipped": estimate.total_bytes,
        "rss_growth": got["rss"],
        "idle_mapped": idle_mapped,
        "rss_in_use": got["rss"] - idle_mapped,
        "rss_file": got["file"],
        "err_total_shipped": relative(estimate.total_bytes, got["rss"] - idle_mapped),
        "estimate_peak": estimate.peak_load_bytes,
        "peak_rss": got["peak"],
        "load_s": round(got["load_s"], 2),
    }


def calibrate(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The process overhead per kind of load, as this run measures it on the calibration models."""
    overhead = {}
    for load_kind in ("plain", "bnb"):
        samples = [
            r["rss_in_use"] - r["estimate_weights"]
            for r in rows
            if r["role"] == "calibration" and kind(r["option"]) == load_kind
        ]
        if samples:
            overhead[load_kind] = statistics.mean(samples)
    return overhead


def apply_calibration(rows: list[dict[str, Any]], overhead: dict[str, float]) -> None:
    for row in rows:
        if kind(row["option"]) in overhead:
            row["estimate_total_calibrated"] = row["estimate_weights"] + overhead[kind(row["option"])]
            row["err_total_calibrated"] = relative(row["estimate_total_calibrated"], row["rss_in_use"])


def accelerate_estimates(hub_repos: list[str], local_configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Bytes per accelerate dtype (float32, float16, int8, int4) of every repo and local config."""
    from tests.hubserver import HubServer, build_fixtures, default_root

    found: dict[str, dict[str, float]] = {}
    with (
        HubServer(default_root(), repos=build_fixtures(default_root())) as hub,
        tempfile.TemporaryDirectory(prefix="mistudio-bench-accelerate-") as home,
    ):
        env = {**os.environ, **ENV, "HF_ENDPOINT": hub.url, "HF_HOME": home}
        done = subprocess.run(
            [sys.executable, "-c", ACCELERATE_CLI, *hub_repos],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=True,
        )
    found.update(parse_accelerate_output(done.stdout))
    if local_configs:
        done = subprocess.run(
            [sys.executable, "-c", ACCELERATE_API, json.dumps(local_configs)],
            capture_output=True,
            text=True,
            env={**os.environ, **ENV},
            timeout=600,
            check=True,
        )
        found.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return found


def parse_accelerate_output(text: str) -> dict[str, dict[str, float]]:
    """The "Total Size" column of each table `accelerate estimate-memory` printed, in bytes."""
    sizes: dict[str, dict[str, float]] = {}
    for section in text.split("=== ")[1:]:
        repo, _, table = section.partition("\n")
        rows = {dtype: float(value) * _UNITS[unit] for dtype, value, unit in _CLI_ROW.findall(table)}
        if rows:
            sizes[repo.strip()] = rows
        else:
            print(f"accelerate estimate-memory {repo.strip()}: {table.strip()[-300:]}", file=sys.stderr)
    return sizes


def add_accelerate(rows: list[dict[str, Any]], accelerate: dict[str, dict[str, float]]) -> None:
    for row in rows:
        model = MODELS[row["model"]]
        sizes = accelerate.get(model.hub_repo or row["model"])
        if sizes:
            row["accelerate"] = sizes[ACCELERATE_DTYPE[row["option"]]]
            row["accelerate_via"] = "cli" if model.hub_repo else "api"
            row["err_accelerate"] = relative(row["accelerate"], row["footprint_plus_state"])


def full_size_rows(accelerate: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for repo_id, entry in SHAPES.items():
        started = time.perf_counter()
        layout = sizing.model_layout(entry["config"])
        tensors = {name: ("BF16", tensor.shape) for name, tensor in layout.params.items()}
        estimates = sizing.estimate_from_layout(layout, tensors, config=entry["config"], context=4096)
        rows.append(
            {
                "repo_id": repo_id,
                "params": layout.param_count,
                "params_exact": layout.param_count == entry["params"],
                "seconds": round(time.perf_counter() - started, 3),
                **{option: estimate.total_bytes for option, estimate in estimates.items()},
                "weights": {option: e.weights_bytes + e.quant_state_bytes for option, e in estimates.items()},
                "kv_4096": estimates["bf16"].kv_cache_bytes,
                "accelerate": accelerate.get(repo_id),
            }
        )
    return rows


def accelerate_vs_gpu_log(accelerate: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """accelerate's estimate of each load in the H100 log (gpu_check.py) against its memory_allocated."""
    if not GPU_LOG.exists():
        return []
    compared = []
    for line in GPU_LOG.read_text().splitlines():
        load = json.loads(line) if line.startswith('{"model"') else None
        sizes = accelerate.get(load["model"]) if load else None
        if load and sizes and load["option"] in ACCELERATE_DTYPE:
            theirs = sizes[ACCELERATE_DTYPE[load["option"]]]
            compared.append(
                {
                    "model": load["model"],
                    "option": load["option"],
                    "allocated": load["allocated"],
                    "accelerate": theirs,
                    "err": relative(theirs, load["allocated"]),
                }
            )
    return compared


def gib(value: float) -> str:
    return f"{value / 2**30:.2f}"


def mb(value: float) -> str:
    return f"{value / 1e6:.1f}"


def print_tables(
    rows: list[dict[str, Any]], big: list[dict[str, Any]], overhead: dict[str, float], gpu: list[dict[str, Any]]
) -> None:
    print(
        "Estimate of a load vs get_memory_footprint() + quantization state; accelerate estimate-memory for the "
        'same model and dtype (CLI against the test Hub; "api": its Python API, the config being on no Hub).'
    )
    print()
    print(
        "| model | params | ckpt | option | estimate MB | accelerate MB | footprint+state MB | err | accelerate err |"
    )
    print("|" + "---|" * 9)
    for r in rows:
        accelerate = (
            (f"{mb(r['accelerate'])}{' (api)' if r['accelerate_via'] == 'api' else ''}", f"{r['err_accelerate']:+.1%}")
            if "accelerate" in r
            else ("–", "–")
        )
        print(
            f"| {r['model']} | {r['params']:,} | {r['checkpoint']} | {r['option']} | {mb(r['estimate_weights'])} | "
            f"{accelerate[0]} | {mb(r['footprint_plus_state'])} | {r['err_footprint']:+.4%} | {accelerate[1]} |"
        )
    print()
    calibrated = ", ".join(f"{k} {mb(v)} MB" for k, v in overhead.items())
    print(
        f"Estimate total vs RSS growth (less idle mapped checkpoint pages): with the shipped OVERHEAD_BYTES "
        f"(plain {mb(sizing.OVERHEAD_BYTES['cpu']['plain'])} MB, bnb {mb(sizing.OVERHEAD_BYTES['cpu']['bnb'])} MB; "
        f"not fitted to this run), and with the overhead this run measures on {', '.join(CALIBRATION_MODELS)} "
        f"({calibrated}): in sample on those, out of sample on the others."
    )
    print()
    print(
        "| model | option | role | RSS growth MB | idle mapped ckpt MB | in use MB | est. (shipped) MB | err | "
        "est. (calibrated here) MB | err | RssFile MB | est. peak MB | peak MB | load s |"
    )
    print("|" + "---|" * 14)
    for r in rows:
        print(
            f"| {r['model']} | {r['option']} | {r['role']} | {mb(r['rss_growth'])} | {mb(r['idle_mapped'])} | "
            f"{mb(r['rss_in_use'])} | {mb(r['estimate_total_shipped'])} | {r['err_total_shipped']:+.2%} | "
            f"{mb(r.get('estimate_total_calibrated', math.nan))} | {r.get('err_total_calibrated', math.nan):+.2%} | "
            f"{mb(r['rss_file'])} | {mb(r['estimate_peak'])} | {mb(r['peak_rss'])} | {r['load_s']} |"
        )
    print()
    print("| model | params (exact) | " + " | ".join(f"{o} GiB" for o in sizing.OPTIONS) + " | KV@4096 bf16 GiB | s |")
    print("|" + "---|" * (len(sizing.OPTIONS) + 4))
    for r in big:
        print(
            f"| {r['repo_id']} | {r['params']:,} {'✓' if r['params_exact'] else '✗'} | "
            + " | ".join(gib(r[o]) for o in sizing.OPTIONS)
            + f" | {gib(r['kv_4096'])} | {r['seconds']} |"
        )
    print()
    print(
        "Weights + quantization state of the full-size configs: ours vs accelerate estimate-memory (not measured: "
        "these models are not loaded here)."
    )
    print()
    print(
        "| model | "
        + " | ".join(f"{o}: ours / accelerate GiB" for o in ("fp32", "bf16", "bnb-8bit", "bnb-4bit"))
        + " |"
    )
    print("|" + "---|" * 5)
    for r in big:
        theirs = r["accelerate"] or {}
        print(
            f"| {r['repo_id']} | "
            + " | ".join(
                f"{gib(r['weights'][o])} / {gib(theirs[ACCELERATE_DTYPE[o]]) if theirs else '–'}"
                for o in ("fp32", "bf16", "bnb-8bit", "bnb-4bit")
            )
            + " |"
        )
    if gpu:
        print()
        print(f"accelerate estimate-memory (this run) vs the H100 loads of {GPU_LOG.name} (its memory_allocated).")
        print()
        print("| model | option | memory_allocated MB | accelerate MB | accelerate err |")
        print("|" + "---|" * 5)
        for g in gpu:
            print(f"| {g['model']} | {g['option']} | {mb(g['allocated'])} | {mb(g['accelerate'])} | {g['err']:+.1%} |")


def summary(
    rows: list[dict[str, Any]], big: list[dict[str, Any]], overhead: dict[str, float], gpu: list[dict[str, Any]]
) -> dict[str, Any]:
    """The final JSON line: every figure BENCHMARKS.md and its notes quote."""
    validation = [r for r in rows if r["role"] == "validation" and "err_total_calibrated" in r]
    compared = [r for r in rows if "err_accelerate" in r]
    worst_calibrated = max((abs(r["err_total_calibrated"]) for r in validation), default=None)
    return {
        "rows": len(rows),
        "models": sorted({r["model"] for r in rows}),
        "calibration_models": [m for m in CALIBRATION_MODELS if any(r["model"] == m for r in rows)],
        "validation_models": sorted({r["model"] for r in validation}),
        "worst_footprint_err": max(abs(r["err_footprint"]) for r in rows),
        "worst_total_err_shipped": max(abs(r["err_total_shipped"]) for r in rows),
        "total_err_shipped_range": [
            min(r["err_total_shipped"] for r in rows),
            max(r["err_total_shipped"] for r in rows),
        ],
        "worst_total_err_calibrated_out_of_sample": worst_calibrated,
        "overhead_shipped": sizing.OVERHEAD_BYTES["cpu"],
        "overhead_calibrated": overhead,
        "rss_file_calibration": {
            k: statistics.mean(r["rss_file"] for r in rows if r["role"] == "calibration" and kind(r["option"]) == k)
            for k in overhead
        },
        "peak_over_estimate": {
            k: [r["peak_rss"] / r["estimate_peak"] for r in rows if kind(r["option"]) == k] for k in ("plain", "bnb")
        },
        "accelerate_err": {
            option: [r["err_accelerate"] for r in compared if r["option"] == option] for option in LOADS
        },
        "accelerate_via": sorted({r["accelerate_via"] for r in compared}),
        "full_size_weights": {r["repo_id"]: r["weights"] for r in big},
        "full_size_accelerate": {r["repo_id"]: r["accelerate"] for r in big},
        "gpu_log_accelerate": gpu,
        "footprint_ok": max(abs(r["err_footprint"]) for r in rows) <= 0.001,
        "total_ok": worst_calibrated is not None and worst_calibrated <= 0.02,
        "params_exact": all(r["params_exact"] for r in big),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {' and '.join(QUICK)} (CI smoke run)")
    parser.add_argument("--models", help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "mistudio-bench-models")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else list(QUICK if args.quick else MODELS)
    rows = accuracy_rows(names, args.root)
    overhead = calibrate(rows)
    apply_calibration(rows, overhead)
    hub_repos = sorted({m.hub_repo for n, m in MODELS.items() if n in names and m.hub_repo} | set(SHAPES))
    accelerate = accelerate_estimates(hub_repos, {n: dict(MODELS[n].config) for n in names if not MODELS[n].hub_repo})
    add_accelerate(rows, accelerate)
    big = full_size_rows(accelerate)
    gpu = accelerate_vs_gpu_log(accelerate)
    print_tables(rows, big, overhead, gpu)
    print(json.dumps(summary(rows, big, overhead, gpu)))


if __name__ == "__main__":
    main()
