"""Accuracy of the memory estimates on CPU, and the full-size estimate table.

For models of several families built from configs with random weights, every option is loaded in a
fresh process and compared with (a) get_memory_footprint() + quant state (goal ≤ 0.1%) and (b) the
process's resident-memory growth from interpreter start to loaded model with every weight page touched
(goal: total within 2%). Then the estimate table of every config in model-shapes.json (headers built on
the meta device) with exact parameter counts. Prints markdown tables and one final JSON line.

    .venv/bin/python benchmarks/bench_estimates.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mistudio_jupyter.core.anatomy import sizing  # noqa: E402
from mistudio_jupyter.core.snapshot import local_tensors  # noqa: E402
from tests.tiny_configs import TINY_CONFIGS  # noqa: E402

SHAPES = json.loads((ROOT / "tests" / "hubserver" / "model_shapes.json").read_text())["models"]
_DECODER = {"vocab_size": 32000, "max_position_embeddings": 2048, "tie_word_embeddings": False}
MODELS: dict[str, tuple[dict[str, Any], str]] = {  # name -> (config, checkpoint dtype)
    "gpt2-124M": (SHAPES["gpt2"]["config"], "float32"),
    "llama-125M": ({"model_type": "llama", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                    "num_key_value_heads": 4, "intermediate_size": 2048, **_DECODER}, "bfloat16"),
    "pythia-70m": (SHAPES["EleutherAI/pythia-70m"]["config"], "float16"),
    "gemma2-40M": ({"model_type": "gemma2", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 1024, "vocab_size": 128000,
                    "max_position_embeddings": 2048, "tie_word_embeddings": True}, "bfloat16"),
    "qwen2-tiny": (TINY_CONFIGS["qwen2"], "float32"),
}
QUICK = ("pythia-70m", "qwen2-tiny")
LOADS = {
    "fp32": {"dtype": "float32"}, "fp16": {"dtype": "float16"}, "bf16": {"dtype": "bfloat16"},
    "bnb-8bit": {"quantization": "bnb-8bit"}, "bnb-4bit": {"quantization": "bnb-4bit"},
    "bnb-4bit-dq": {"quantization": "bnb-4bit", "double_quant": True},
}

# Runs in a fresh interpreter: RSS at start, load, touch every page of every tensor, RSS again.
CHILD = r"""
import gc, json, sys, time
def status():
    return {l.split(':')[0]: int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.split(':')[0] in
            ('VmRSS', 'RssAnon', 'RssFile', 'VmHWM')}
start = status()
import torch
from mistudio_jupyter.core.loading import load_model, _state_tensors
path, arguments = sys.argv[1], json.loads(sys.argv[2])
loaded = load_model(path, device_map='cpu', **arguments)
total = 0
for tensor in [*loaded.model.parameters(), *loaded.model.buffers()] + [
        t for p in loaded.model.parameters() for t in _state_tensors(p)]:
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
backed = sum(t.numel() * t.element_size() for t in {p.data_ptr(): p for p in loaded.model.parameters()}.values()
             if any(lo <= t.data_ptr() < hi for lo, hi in ranges))
print(json.dumps({'measured': loaded.measured_memory_bytes, 'rss': end['VmRSS'] - start['VmRSS'],
                  'anon': end['RssAnon'] - start['RssAnon'], 'file': end['RssFile'] - start['RssFile'],
                  'peak': end['VmHWM'] - start['VmRSS'], 'ckpt_mapped': mapped, 'ckpt_backing': backed, 'load_s': loaded.load_time_s}))
"""


def build(name: str, config: dict[str, Any], dtype: str, root: Path) -> Path:
    """Save a random-weight model of `config` in `dtype` under root/name (once)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    target = root / name
    if not (target / "config.json").exists():
        options = {key: value for key, value in config.items() if key != "model_type"}
        hf_config = AutoConfig.for_model(config["model_type"], **options)
        with torch.device("cpu"):
            model = AutoModelForCausalLM.from_config(hf_config, dtype=getattr(torch, dtype))
        model.save_pretrained(target)
    return target


def headers(directory: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (info.dtype, info.shape) for name, info in local_tensors(directory).items()}


def measure(directory: Path, arguments: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(directory), json.dumps(arguments)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def relative(estimate: int, measured: int) -> float:
    return (estimate - measured) / measured if measured else math.inf


def accuracy_rows(names: list[str], root: Path) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        config, dtype = MODELS[name]
        directory = build(name, config, dtype, root)
        saved_config = json.loads((directory / "config.json").read_text())
        tensors = headers(directory)
        estimates = sizing.estimate_memory(saved_config, tensors)
        params = sizing.model_layout(saved_config).param_count
        for option, arguments in LOADS.items():
            got = measure(directory, arguments)
            estimate = estimates[option]
            weights = estimate.weights_bytes + estimate.quant_state_bytes
            rows.append({
                "model": name, "params": params, "checkpoint": dtype, "option": option,
                "estimate_weights": weights, "footprint_plus_state": got["measured"],
                "err_footprint": relative(weights, got["measured"]),
                "estimate_total": estimate.total_bytes, "rss_growth": got["rss"],
                "err_total": relative(estimate.total_bytes, got["rss"]),
                # resident checkpoint pages no parameter uses: clean page cache the kernel can drop
                "idle_mapped": max(0, got["ckpt_mapped"] - got["ckpt_backing"]),
                "weights_rss_gap": got["rss"] - estimate.overhead_bytes - weights,
                "rss_anon": got["anon"], "rss_file": got["file"], "ckpt_mapped": got["ckpt_mapped"],
                "estimate_peak": estimate.peak_load_bytes, "peak_rss": got["peak"], "load_s": round(got["load_s"], 2),
            })
            rows[-1]["err_total_in_use"] = relative(estimate.total_bytes, got["rss"] - rows[-1]["idle_mapped"])
            # without shared-library pages, whose count is page-cache state (see sizing.CPU_SHARED_LIBRARY_BYTES)
            libraries = got["file"] - got["ckpt_mapped"]
            rows[-1]["err_private"] = relative(
                estimate.total_bytes - sizing.CPU_SHARED_LIBRARY_BYTES["bnb" if option.startswith("bnb") else "plain"],
                got["rss"] - libraries - rows[-1]["idle_mapped"])
            print(f"  {name} {option}: footprint err {rows[-1]['err_footprint']:+.4%}, total err "
                  f"{rows[-1]['err_total']:+.2%}, without idle mapped pages {rows[-1]['err_total_in_use']:+.2%}, without shared-library pages either {rows[-1]['err_private']:+.2%}",
                  file=sys.stderr, flush=True)
    return rows


def full_size_rows() -> list[dict[str, Any]]:
    rows = []
    for repo_id, entry in SHAPES.items():
        started = time.perf_counter()
        layout = sizing.model_layout(entry["config"])
        tensors = {name: ("BF16", tensor.shape) for name, tensor in layout.params.items()}
        estimates = sizing.estimate_from_layout(layout, tensors, config=entry["config"], context=4096)
        rows.append({"repo_id": repo_id, "params": layout.param_count, "params_exact": layout.param_count == entry["params"],
                     "seconds": round(time.perf_counter() - started, 3),
                     **{option: estimate.total_bytes for option, estimate in estimates.items()},
                     "kv_4096": estimates["bf16"].kv_cache_bytes})
    return rows


def gib(value: int) -> str:
    return f"{value / 2**30:.2f}"


def mb(value: int) -> str:
    return f"{value / 1e6:.1f}"


def print_tables(rows: list[dict[str, Any]], big: list[dict[str, Any]]) -> None:
    print("| model | params | ckpt | option | est. weights+state MB | footprint+state MB | err | est. total MB | "
          "RSS growth MB | err | idle mapped ckpt MB | err w/o idle | err w/o idle, w/o libraries | "
          "RSS − overhead − weights MB | RssFile MB | est. peak MB | peak MB | load s |")
    print("|" + "---|" * 18)
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['checkpoint']} | {r['option']} | {mb(r['estimate_weights'])} | "
              f"{mb(r['footprint_plus_state'])} | {r['err_footprint']:+.4%} | {mb(r['estimate_total'])} | "
              f"{mb(r['rss_growth'])} | {r['err_total']:+.2%} | {mb(r['idle_mapped'])} | {r['err_total_in_use']:+.2%} | "
              f"{r['err_private']:+.2%} | {mb(r['weights_rss_gap'])} | {mb(r['rss_file'])} | {mb(r['estimate_peak'])} | {mb(r['peak_rss'])} | {r['load_s']} |")
    print()
    print("| model | params (exact) | " + " | ".join(f"{o} GiB" for o in sizing.OPTIONS) + " | KV@4096 bf16 GiB | s |")
    print("|" + "---|" * (len(sizing.OPTIONS) + 4))
    for r in big:
        print(f"| {r['repo_id']} | {r['params']:,} {'✓' if r['params_exact'] else '✗'} | "
              + " | ".join(gib(r[o]) for o in sizing.OPTIONS) + f" | {gib(r['kv_4096'])} | {r['seconds']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the small models (CI smoke run)")
    parser.add_argument("--models", help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "mistudio-bench-models")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else list(QUICK if args.quick else MODELS)
    rows = accuracy_rows(names, args.root)
    big = full_size_rows()
    print_tables(rows, big)
    worst_footprint = max(abs(r["err_footprint"]) for r in rows)
    worst_total = max(abs(r["err_total"]) for r in rows)
    worst_in_use = max(abs(r["err_total_in_use"]) for r in rows)
    worst_private = max(abs(r["err_private"]) for r in rows)
    # The process overhead as this run finds it: a load whose weights are negligible.
    tiny = next((r for r in rows if r["model"] == "qwen2-tiny" and r["option"] == "fp32"), None)
    overhead = {"overhead_measured": tiny["weights_rss_gap"] + sizing.OVERHEAD_BYTES["cpu"]["plain"],
                "overhead_rss_file": tiny["rss_file"], "overhead_constant": sizing.OVERHEAD_BYTES["cpu"]["plain"]} if tiny else {}
    print(json.dumps({"rows": len(rows), **overhead, "worst_footprint_err": worst_footprint, "worst_total_err": worst_total,
                      "worst_total_err_without_idle_mapped": worst_in_use, "worst_private_err": worst_private,
                      "footprint_ok": worst_footprint <= 0.001, "total_ok": worst_private <= 0.02,
                      "params_exact": all(r["params_exact"] for r in big)}))


if __name__ == "__main__":
    main()
