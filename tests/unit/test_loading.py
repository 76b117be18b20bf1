"""Loading: safe bitsandbytes defaults, local files only, clear errors, and no torch at import time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mistudio_jupyter.core.errors import InvalidArgument, NotFound, UnsafeRepo
from mistudio_jupyter.core.loading import load_model
from tests.unit.test_sizing import save_tiny


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("load") / "llama")


@pytest.mark.parametrize(
    "arguments", [{"quantization": "bnb-2bit"}, {"quantization": "gptq"}, {"dtype": "int8"}, {"dtype": "fp16"}]
)
def test_unknown_options_are_invalid_argument(arguments: dict[str, str], llama_dir: Path) -> None:
    with pytest.raises(InvalidArgument) as raised:
        load_model(llama_dir, **arguments)
    assert raised.value.code == "invalid_argument"


def test_missing_snapshot_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_model(tmp_path)


def test_4bit_is_nf4_with_bf16_compute_and_a_bf16_rest(llama_dir: Path) -> None:
    import torch

    loaded = load_model(llama_dir, quantization="bnb-4bit", device_map="cpu")
    model = loaded.model
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.weight.quant_state.quant_type == "nf4"
    assert layer.compute_dtype == torch.bfloat16
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert loaded.measured_memory_bytes > model.get_memory_footprint()
    assert loaded.load_time_s > 0


def test_auto_dtype_keeps_the_checkpoint_dtype(llama_dir: Path, tmp_path: Path) -> None:
    import torch

    load_model(llama_dir, dtype="bfloat16", device_map="cpu").model.save_pretrained(tmp_path / "bf16")
    assert load_model(tmp_path / "bf16", device_map="cpu").model.dtype == torch.bfloat16


def test_remote_code_is_refused_unless_asked(llama_dir: Path, tmp_path: Path) -> None:
    config = json.loads((llama_dir / "config.json").read_text())
    config.update(model_type="custom_thing", auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(UnsafeRepo):
        load_model(tmp_path)


def test_loads_in_a_fresh_process_and_core_imports_no_torch(llama_dir: Path) -> None:
    script = (
        "import sys\n"
        "import mistudio_jupyter.core.preview, mistudio_jupyter.core.loading, mistudio_jupyter.core.system\n"
        "assert 'torch' not in sys.modules, 'core imported torch'\n"
        "from mistudio_jupyter.core.loading import load_model\n"
        f"loaded = load_model({str(llama_dir)!r}, quantization='bnb-8bit', device_map='cpu')\n"
        "print(loaded.measured_memory_bytes)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 0
