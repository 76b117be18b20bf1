"""The choice lists live in core/options.py alone: the JS views and the OpenAPI document carry the same ones;
load options named as the memory table names them map onto the older quantization/dtype pair there."""

from __future__ import annotations

from pathlib import Path

import pytest

from mistudio_jupyter.core import options
from mistudio_jupyter.core.errors import InvalidArgument
from mistudio_jupyter.core.options import LoadChoice, entry_choice, load_choice
from mistudio_jupyter.server import openapi

GENERATED = Path(__file__).parents[2] / "js" / "views" / "options.js"


def test_the_js_views_read_the_lists_of_core_options() -> None:
    assert GENERATED.read_text(encoding="utf-8") == options.javascript_module(), (
        "js/views/options.js is stale: run `python -m mistudio_jupyter.core.options js/views/options.js`"
    )


def test_the_openapi_document_names_the_same_choices() -> None:
    schemas = openapi.document()["components"]["schemas"]
    assert tuple(schemas["Status"]["enum"]) == options.STATUSES
    assert tuple(schemas["Quantization"]["enum"]) == options.QUANTIZATIONS
    assert tuple(schemas["Dtype"]["enum"]) == options.DTYPES
    assert tuple(schemas["LoadOption"]["enum"]) == options.OPTION_NAMES
    event = next(
        variant["properties"]["data"]["properties"]["status"]
        for variant in schemas["EventMessage"]["oneOf"]
        if variant["properties"]["event"].get("const") == "status_changed"
    )
    assert tuple(event["enum"]) == (*options.STATUSES, "deleted")


@pytest.mark.parametrize(
    ("option", "choice"),
    [
        ("fp32", LoadChoice("none", "float32")),
        ("fp16", LoadChoice("none", "float16")),
        ("bf16", LoadChoice("none", "bfloat16")),
        ("bnb-8bit", LoadChoice("bnb-8bit", "auto")),
        ("bnb-4bit", LoadChoice("bnb-4bit", "auto")),
        ("bnb-4bit-dq", LoadChoice("bnb-4bit", "auto", double_quant=True)),
    ],
)
def test_every_estimate_option_names_a_load_choice(option: str, choice: LoadChoice) -> None:
    assert load_choice(option) == choice
    assert load_choice(option, choice.quantization, choice.dtype) == choice  # saying the same twice is fine


def test_the_older_pair_still_works_and_defaults_to_the_entry() -> None:
    assert load_choice(quantization="bnb-4bit", dtype="float16") == LoadChoice("bnb-4bit", "float16")
    assert load_choice() == LoadChoice("none", "auto")
    assert load_choice(dtype="bfloat16", default=LoadChoice("bnb-8bit", "auto")) == LoadChoice("bnb-8bit", "bfloat16")


@pytest.mark.parametrize(
    "arguments",
    [
        {"option": "fp16", "quantization": "bnb-4bit"},
        {"option": "bnb-4bit", "quantization": "none"},
        {"option": "fp16", "dtype": "float32"},
        {"option": "fp8"},
        {"quantization": "bnb-2bit"},
    ],
)
def test_a_conflicting_or_unknown_choice_is_invalid_argument(arguments: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        load_choice(**arguments)


def test_double_quant_is_chosen_when_loading_not_on_an_entry() -> None:
    assert entry_choice("bnb-4bit") == LoadChoice("bnb-4bit", "auto")
    with pytest.raises(InvalidArgument, match="chosen when loading"):
        entry_choice("bnb-4bit-dq")
