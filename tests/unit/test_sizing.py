"""Memory estimates: byte-exact against real bitsandbytes on CPU, exact parameter counts at full size.

The quantization state is counted from bitsandbytes' own objects (tests/bnb_state.py), not with the
loading helpers whose numbers the catalog records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mistudio_jupyter.core.anatomy import sizing
from mistudio_jupyter.core.errors import InvalidArgument
from mistudio_jupyter.core.snapshot import local_tensors
from mistudio_jupyter.core.system import fit_verdict, parse_smi_line
from tests.bnb_state import footprint_plus_quant_state, four_bit_state_tensors, storage_bytes
from tests.tiny_configs import TINY_CONFIGS

SHAPES = json.loads((Path(__file__).parents[1] / "hubserver" / "model_shapes.json").read_text())["models"]
FAMILIES = ["gpt2", "pythia", "llama", "gemma2", "phi", "qwen2"]
LOADS = {  # option -> load_model arguments
    "fp32": {"dtype": "float32"},
    "fp16": {"dtype": "float16"},
    "bf16": {"dtype": "bfloat16"},
    "bnb-8bit": {"quantization": "bnb-8bit"},
    "bnb-4bit": {"quantization": "bnb-4bit"},
    "bnb-4bit-dq": {"quantization": "bnb-4bit", "double_quant": True},
}


def save_tiny(family: str, directory: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = dict(TINY_CONFIGS[family])
    model_type = config.pop("model_type")
    AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config)).save_pretrained(directory)
    return directory


def read_headers(directory: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (info.dtype, info.shape) for name, info in local_tensors(directory).items()}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {family: save_tiny(family, root / family) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_estimate_matches_footprint_plus_quant_state_to_the_byte(family: str, tiny_dirs: dict[str, Path]) -> None:
    from mistudio_jupyter.core.loading import load_model

    directory = tiny_dirs[family]
    config = json.loads((directory / "config.json").read_text())
    estimates = sizing.estimate_memory(config, read_headers(directory))
    for option, arguments in LOADS.items():
        model = load_model(directory, device_map="cpu", **arguments).model
        estimate = estimates[option]
        assert estimate.weights_bytes + estimate.quant_state_bytes == footprint_plus_quant_state(model), option


@pytest.mark.parametrize("numel_shape", [(100, 37), (640, 4096), (3, 5)])
def test_quant_state_formula_matches_bitsandbytes(numel_shape: tuple[int, int]) -> None:
    import torch
    from bitsandbytes.functional import int8_vectorwise_quant, quantize_4bit

    weight = torch.randn(*numel_shape, dtype=torch.bfloat16)
    for option, nested in (("bnb-4bit", False), ("bnb-4bit-dq", True)):
        packed, state = quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=nested)
        expected = (storage_bytes([packed]), storage_bytes(four_bit_state_tensors(state)))
        assert sizing.quant_state_bytes(weight.numel(), numel_shape[0], option) == expected, option
    int8, row_scales, _ = int8_vectorwise_quant(weight.half())
    expected = (storage_bytes([int8]), storage_bytes([row_scales]))
    assert sizing.quant_state_bytes(weight.numel(), numel_shape[0], "bnb-8bit") == expected


def test_prequantized_checkpoint_sized_from_packed_tensors(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from mistudio_jupyter.core.loading import load_model

    for arguments in (LOADS["bnb-4bit-dq"], LOADS["bnb-8bit"]):
        saved = tmp_path / arguments["quantization"]
        load_model(tiny_dirs["llama"], device_map="cpu", **arguments).model.save_pretrained(saved)
        config = json.loads((saved / "config.json").read_text())
        estimate = sizing.estimate_memory(config, read_headers(saved))["bf16"]
        reloaded = load_model(saved, device_map="cpu").model
        assert estimate.weights_bytes + estimate.quant_state_bytes == footprint_plus_quant_state(reloaded)
        layout = sizing.model_layout(config)
        by_dtype = sizing.params_by_dtype(layout, read_headers(saved), config)
        assert sum(by_dtype.values()) == layout.param_count
        assert by_dtype[sizing.quant_method(config)] > 0


@pytest.mark.parametrize("repo_id", sorted(SHAPES))
def test_full_size_param_counts_are_exact(repo_id: str) -> None:
    layout = sizing.model_layout(SHAPES[repo_id]["config"])
    assert layout.param_count == SHAPES[repo_id]["params"]


def test_70b_table_is_ordered_and_not_params_times_bits() -> None:
    estimates = sizing.estimate_memory(SHAPES["meta-llama/Meta-Llama-3-70B"]["config"], {})
    weights = {option: estimate.weights_bytes + estimate.quant_state_bytes for option, estimate in estimates.items()}
    params = SHAPES["meta-llama/Meta-Llama-3-70B"]["params"]
    assert weights["fp32"] > weights["bf16"] > weights["bnb-8bit"] > weights["bnb-4bit"] > weights["bnb-4bit-dq"]
    assert 0 <= weights["bf16"] - 2 * params < 4096  # + the fp32 rotary buffers
    # embeddings and lm_head stay bf16 (2 × 128256 × 8192 × 2 bytes) on top of 0.5 byte per quantized weight
    assert weights["bnb-4bit"] > params // 2 + 4 * 128256 * 8192


def test_kv_cache_counts_grouped_heads_and_sliding_windows() -> None:
    llama = sizing.estimate_memory(SHAPES["meta-llama/Meta-Llama-3-8B"]["config"], {}, context=1000, batch=2)
    assert llama["bf16"].kv_cache_bytes == 1000 * 2 * 32 * 2 * 8 * 128 * 2
    assert llama["fp32"].kv_cache_bytes == 2 * llama["bf16"].kv_cache_bytes
    gemma = sizing.model_layout(SHAPES["google/gemma-2-2b"]["config"])
    full = gemma.num_layers - gemma.sliding_layers
    assert gemma.sliding_layers == 13
    assert sizing.kv_cache_bytes(gemma, context=8192, batch=1, dtype_bytes=2) == 2 * 4 * 256 * 2 * (
        full * 8192 + 13 * 4096
    )


def test_peak_counts_the_checkpoint_only_when_converting(tiny_dirs: dict[str, Path]) -> None:
    directory = tiny_dirs["llama"]
    config = json.loads((directory / "config.json").read_text())
    headers = read_headers(directory)  # saved in fp32
    estimates = sizing.estimate_memory(config, headers)
    checkpoint = sum(sizing.DTYPE_BYTES[d] * sizing.math.prod(s) for d, s in headers.values())
    fp32, bf16 = estimates["fp32"], estimates["bf16"]
    assert fp32.peak_load_bytes == fp32.total_bytes
    assert bf16.peak_load_bytes == bf16.total_bytes + checkpoint


def test_bad_context_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        sizing.estimate_memory(TINY_CONFIGS["llama"], {}, context=-1)


def test_fit_verdict_prefers_gpu_then_ram() -> None:
    def estimate(total: int) -> sizing.MemoryEstimate:
        return sizing.MemoryEstimate(total, 0, 0, 0, total, total)

    resources = {
        "gpus": [{"index": 0, "name": "X", "total_bytes": 100, "free_bytes": 50}],
        "ram": {"total_bytes": 1000, "available_bytes": 500},
    }
    verdict = fit_verdict({"a": estimate(40), "b": estimate(400), "c": estimate(4000)}, resources)
    assert [verdict[key]["verdict"] for key in "abc"] == ["gpu", "cpu", "none"]
    assert fit_verdict({"a": estimate(1)}, {**resources, "gpus": []})["a"]["gpu"] is None


def test_nvidia_smi_lines_parse() -> None:
    assert parse_smi_line("0, NVIDIA H100 80GB HBM3, 81559, 81000") == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "total_bytes": 81559 * 2**20,
        "free_bytes": 81000 * 2**20,
    }
    assert parse_smi_line("garbage") is None
