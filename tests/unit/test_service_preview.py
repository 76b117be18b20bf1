"""Preview, estimate and load through ModelManager and the CLI, against the test Hub."""

from __future__ import annotations

import io
import json

import pytest

from mistudio_jupyter import cli
from mistudio_jupyter.core import errors
from mistudio_jupyter.core.service import ModelManager


@pytest.fixture
def manager(settings, monkeypatch):
    monkeypatch.setenv("MISTUDIO_DOWNLOAD_SUMMARY", "0")
    manager = ModelManager(settings)
    yield manager
    manager.close()


def test_preview_and_estimate_of_a_hub_repo(manager):
    preview = manager.preview("tiny/llama", context=128, batch=2)
    assert preview["params"] == 139_584 and preview["family"] == "llama"
    assert preview["memory"]["fp16"]["kv_cache_bytes"] == 128 * 2 * 2 * 2 * 2 * 16 * 2  # P·B·layers·(k,v)·Hkv·Dh·2B
    assert preview["capabilities"]["hook_table"] == "verified"
    estimate = manager.estimate("tiny/llama")
    assert estimate["memory"]["bnb-4bit"]["weights_bytes"] < estimate["memory"]["fp32"]["weights_bytes"]
    assert set(estimate["fit"]) == set(estimate["memory"])


@pytest.mark.parametrize("bad", [{"context": -1}, {"batch": 0}, {"context": "many"}])
def test_bad_estimate_arguments(manager, bad):
    with pytest.raises(errors.InvalidArgument):
        manager.preview("tiny/llama", **bad)


def test_load_a_downloaded_entry_records_its_memory(manager, hub):
    record = manager.download("tiny/llama", quantization="bnb-4bit").wait(timeout=120)
    with pytest.raises(errors.InvalidArgument):
        manager.load(record.id, quantization="int3")
    hub.clear_log()
    model, tokenizer = manager.load(record.id)
    assert hub.log == []  # local files only
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert tokenizer is not None and tokenizer("hello").input_ids
    loaded = manager.get(record.id)
    assert loaded.measured_memory_bytes > 0 and loaded.load_time_s > 0
    local = manager.estimate(record.id)
    assert (
        local["memory"]["bnb-4bit"]["weights_bytes"] + local["memory"]["bnb-4bit"]["quant_state_bytes"]
        == loaded.measured_memory_bytes
    )


def test_load_takes_the_estimate_option_names(manager):
    record = manager.download("tiny/llama", option="bnb-4bit").wait(timeout=120)
    assert (record.quantization, record.dtype) == ("bnb-4bit", "auto")
    model, _ = manager.load(record.id, option="bnb-4bit-dq")
    assert model.model.layers[0].mlp.up_proj.weight.quant_state.nested  # double quant
    model, _ = manager.load(record.id, option="bf16")
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear" and str(model.dtype) == "torch.bfloat16"
    with pytest.raises(errors.InvalidArgument, match="option 'bf16'"):
        manager.load(record.id, option="bf16", quantization="bnb-8bit")
    with pytest.raises(errors.InvalidArgument, match="chosen when loading"):
        manager.download("tiny/llama", option="bnb-4bit-dq")


def test_load_waits_for_the_download_in_progress(manager, hub):
    hub.faults.set(path="model.safetensors", throttle_bps=200_000)
    record = manager.download("tiny/gpt2").record
    assert record.status in ("pending", "downloading")
    model, _ = manager.load(record.id)
    assert type(model).__name__ == "GPT2LMHeadModel" and manager.get(record.id).status == "ready"


def test_load_refuses_an_entry_that_is_not_downloaded(manager):
    record = manager.add("tiny/gpt2")
    with pytest.raises(errors.InvalidArgument, match="not downloaded"):
        manager.load(record.id)


def test_cli_preview_and_estimate(settings, monkeypatch):
    monkeypatch.setattr(cli, "_default_manager", lambda: ModelManager(settings))
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["preview", "tiny/gemma2", "--json"], stdout=out, stderr=err) == 0
    assert json.loads(out.getvalue())["model_type"] == "gemma2"
    out = io.StringIO()
    assert cli.main(["estimate", "meta-llama/Meta-Llama-3-70B"], stdout=out, stderr=err) == 0
    assert "bnb-4bit-dq" in out.getvalue() and "70.6B parameters" in out.getvalue()
    err = io.StringIO()
    assert cli.main(["preview", "tiny/gated", "--json"], stdout=io.StringIO(), stderr=err) == 1
    assert json.loads(err.getvalue())["error"]["code"] == "gated_login_required"
