"""Anatomy benchmarks: architecture + hook table of Llama-3-70B, and capture overhead on a 124M model.

Run: ``.venv/bin/python benchmarks/bench_anatomy.py``. Prints one line per measurement and a final JSON
line for BENCHMARKS.md. Goals: 70B architecture + hooks ≤ 1 s; capture of 4 hooks ≤ 10 % over a plain
forward pass.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from mistudio_jupyter.core.anatomy.architecture import describe_architecture
from mistudio_jupyter.core.anatomy.hooks import capture, hook_points

SHAPES = Path(__file__).resolve().parents[1] / "tests/hubserver/model_shapes.json"
HOOKS = ["blocks.2.hook_resid_post", "blocks.5.hook_mlp_out", "blocks.8.attn.hook_z", "blocks.11.hook_resid_post"]


def seconds(action: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def bench_architecture() -> dict[str, float]:
    config = json.loads(SHAPES.read_text())["models"]["meta-llama/Meta-Llama-3-70B"]["config"]

    def describe() -> None:
        describe_architecture(config)
        hook_points(config)

    first, *rest = seconds(describe, 6)
    return {"arch_70b_first_s": first, "arch_70b_warm_median_s": statistics.median(rest)}


def bench_capture(batch: int = 2, positions: int = 64, repeats: int = 15) -> dict[str, float]:
    config = AutoConfig.for_model("gpt2", n_embd=768, n_layer=12, n_head=12, vocab_size=50257)
    model = AutoModelForCausalLM.from_config(config).eval()
    ids = torch.randint(0, config.vocab_size, (batch, positions))

    def plain() -> None:
        with torch.no_grad():
            model(ids)

    def captured() -> None:
        with capture(model, HOOKS) as acts, torch.no_grad():
            model(ids)
        assert len(acts) == len(HOOKS)

    plain(), captured()
    plain_times, capture_times = [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        plain_times += seconds(plain, 1)
        capture_times += seconds(captured, 1)
    base, hooked = statistics.median(plain_times), statistics.median(capture_times)
    return {
        "capture_params": sum(p.numel() for p in model.parameters()),
        "forward_median_s": base,
        "capture_4_hooks_median_s": hooked,
        "capture_overhead_ratio": hooked / base - 1,
    }


def main() -> None:
    results = {**bench_architecture(), **bench_capture()}
    print(
        f"architecture+hooks Llama-3-70B: first {results['arch_70b_first_s']:.3f} s, "
        f"warm median {results['arch_70b_warm_median_s']:.3f} s (goal ≤ 1 s)"
    )
    print(
        f"capture 4 hooks on {results['capture_params'] / 1e6:.0f}M params: forward "
        f"{results['forward_median_s'] * 1e3:.1f} ms, "
        f"with capture {results['capture_4_hooks_median_s'] * 1e3:.1f} ms, "
        f"overhead {results['capture_overhead_ratio']:+.1%} (goal ≤ 10%)"
    )
    print(json.dumps({"benchmark": "anatomy", **results}))


if __name__ == "__main__":
    main()
