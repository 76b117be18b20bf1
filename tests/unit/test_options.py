"""The choice lists live in core/options.py alone: the JS views and the OpenAPI document carry the same ones."""
from __future__ import annotations

from pathlib import Path

from mistudio_jupyter.core import options
from mistudio_jupyter.server import openapi

GENERATED = Path(__file__).parents[2] / "js" / "views" / "options.js"


def test_the_js_views_read_the_lists_of_core_options() -> None:
    assert GENERATED.read_text(encoding="utf-8") == options.javascript_module(), (
        "js/views/options.js is stale: run `python -m mistudio_jupyter.core.options js/views/options.js`")


def test_the_openapi_document_names_the_same_choices() -> None:
    schemas = openapi.document()["components"]["schemas"]
    assert tuple(schemas["Status"]["enum"]) == options.STATUSES
    assert tuple(schemas["Quantization"]["enum"]) == options.QUANTIZATIONS
    assert tuple(schemas["Dtype"]["enum"]) == options.DTYPES
    event = next(variant["properties"]["data"]["properties"]["status"]
                 for variant in schemas["EventMessage"]["oneOf"] if variant["properties"]["event"].get("const") == "status_changed")
    assert tuple(event["enum"]) == (*options.STATUSES, "deleted")
