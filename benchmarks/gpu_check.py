"""One-shot GPU check of the memory estimates (run once on an H100; ~5 minutes, no network).

Builds full-size models from tests/hubserver/model_shapes.json with random weights into local
safetensors, then loads each option in a fresh subprocess on the GPU and compares the estimate with
torch.cuda.memory_allocated (goal within 3%), measures the CUDA per-process overhead (memory the
process holds beyond memory_allocated: context, cuBLAS, allocator) and the 4-bit load time (goal:
under 60 s). Prints a markdown table and a final JSON line; partial results survive step failures.

    PYTHONPATH=. python benchmarks/gpu_check.py                    # on the GPU machine
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu --dry-run   # tiny config, CPU rehearsal
"""

from __future__ import annotations

import argparse
import json
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

SHAPES = json.loads((ROOT / "tests" / "hubserver" / "model_shapes.json").read_text())["models"]
GPU_MODELS = ("Qwen/Qwen1.5-0.5B", "google/gemma-2-2b")
DRY_RUN_CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 512,
    "max_position_embeddings": 128,
    "tie_word_embeddings": True,
}
LOADS = {
    "fp16": {"dtype": "float16"},
    "bf16": {"dtype": "bfloat16"},
    "bnb-8bit": {"quantization": "bnb-8bit"},
    "bnb-4bit": {"quantization": "bnb-4bit"},
}

CHILD = r"""
import json, sys, time
import torch
from mistudio_jupyter.core.loading import load_model
path, device, arguments = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cuda = device == 'cuda'
if cuda:
    torch.cuda.init(); torch.zeros(1, device='cuda'); torch.cuda.synchronize()
    free0, total = torch.cuda.mem_get_info(); base = torch.cuda.memory_allocated()
loaded = load_model(path, device_map=device if not cuda else {'': 0}, **arguments)
result = {'measured': loaded.measured_memory_bytes, 'load_s': loaded.load_time_s}
if cuda:
    torch.cuda.synchronize()
    free1, _ = torch.cuda.mem_get_info()
    result.update(allocated=torch.cuda.memory_allocated() - base, reserved=torch.cuda.memory_reserved(),
                  process_used=total - free1, before_load_used=total - free0,
                  peak_allocated=torch.cuda.max_memory_allocated() - base)
print(json.dumps(result))
"""


def build(config: dict[str, Any], target: Path) -> Path:
    """Random-weight bf16 safetensors checkpoint of `config` at `target` (built on CPU, once)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (target / "config.json").exists():
        return target
    options = {key: value for key, value in config.items() if key != "model_type"}
    hf_config = AutoConfig.for_model(config["model_type"], **options)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)
    model = model.to_empty(device="cpu")
    model.tie_weights()  # to_empty gives tied parameters separate storage
    with torch.no_grad():
        for parameter in model.parameters():  # random but finite, cheap to make
            parameter.uniform_(-0.02, 0.02)
    model.save_pretrained(target)
    return target


def headers(directory: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (info.dtype, info.shape) for name, info in local_tensors(directory).items()}


def run_option(directory: Path, device: str, arguments: dict[str, Any], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), device, json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if done.returncode:
        raise RuntimeError(done.stderr.strip()[-1500:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def check(name: str, config: dict[str, Any], root: Path, device: str, timeout: float) -> list[dict[str, Any]]:
    started = time.perf_counter()
    directory = build(config, root / name.replace("/", "--"))
    print(f"built {name} in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    saved = json.loads((directory / "config.json").read_text())
    estimates = sizing.estimate_memory(saved, headers(directory), device=device)
    rows = []
    for option, arguments in LOADS.items():
        estimate = estimates[option]
        row: dict[str, Any] = {
            "model": name,
            "params": sizing.model_layout(saved).param_count,
            "option": option,
            "estimate": estimate.weights_bytes + estimate.quant_state_bytes,
        }
        try:
            got = run_option(directory, device, arguments, timeout)
            measured = got.get("allocated", got["measured"])
            row.update(
                got,
                error_pct=100 * (row["estimate"] - measured) / measured,
                overhead=got["process_used"] - got["reserved"] if "process_used" in got else None,
            )
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
            row["failure"] = str(error)[-500:]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | params | option | estimate MB | allocated MB | err | footprint+state MB | reserved MB | "
        "overhead MB | peak alloc MB | load s |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        if "failure" in r:
            lines.append(
                f"| {r['model']} | {r['params']:,} | {r['option']} | {r['estimate'] / 1e6:.1f} | FAILED: "
                f"{r['failure'][-120:]!r} |||||||"
            )
            continue
        mb = lambda key, r=r: f"{r[key] / 1e6:.1f}" if r.get(key) is not None else "–"  # noqa: E731
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['option']} | {mb('estimate')} | {mb('allocated')} | "
            f"{r['error_pct']:+.2f}% | {mb('measured')} | {mb('reserved')} | {mb('overhead')} | "
            f"{mb('peak_allocated')} | {r['load_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="a tiny config only (rehearsal)")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "mistudio-gpu-check")
    parser.add_argument("--timeout", type=float, default=150, help="seconds per load")
    args = parser.parse_args()
    models = {"tiny-llama": DRY_RUN_CONFIG} if args.dry_run else {name: SHAPES[name]["config"] for name in GPU_MODELS}
    rows: list[dict[str, Any]] = []
    for name, config in models.items():
        try:
            rows += check(name, config, args.root, args.device, args.timeout)
        except Exception as error:  # noqa: BLE001 - report what we have, then go on
            rows.append({"model": name, "params": 0, "option": "build", "estimate": 0, "failure": repr(error)[-500:]})
    print(table(rows))
    ok = [r for r in rows if "failure" not in r]
    four_bit = [r["load_s"] for r in ok if r["option"] == "bnb-4bit"]
    overheads = [r["overhead"] for r in ok if r.get("overhead") is not None]
    print(
        json.dumps(
            {
                "device": args.device,
                "rows": rows,
                "failures": len(rows) - len(ok),
                "worst_error_pct": max((abs(r["error_pct"]) for r in ok), default=None),
                "within_3pct": all(abs(r["error_pct"]) <= 3 for r in ok) and bool(ok),
                "load_4bit_s": max(four_bit, default=None),
                "four_bit_load_under_60s": bool(four_bit) and max(four_bit) < 60,
                "overhead_bytes": max(overheads, default=None),
            }
        )
    )


if __name__ == "__main__":
    main()
