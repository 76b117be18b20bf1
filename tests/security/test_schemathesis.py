"""Schema-driven fuzzing of the REST API from its OpenAPI document (schemathesis) against a live
server process: no 5xx, and every response conforms to the document. Bounded: a few examples per
operation, no stateful phase. (Operations are driven through `as_strategy()`; schemathesis's own pytest
plugin does not support pytest 9 yet.)"""

from __future__ import annotations

import copy
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from mistudio_jupyter.server import openapi
from tests.reliability.live import API, JupyterServer

EXAMPLES_PER_OPERATION = 8


def test_api_conforms_and_never_fails(live: JupyterServer) -> None:
    base = f"http://127.0.0.1:{live.port}{API}"
    document = {**copy.deepcopy(openapi.document()), "servers": [{"url": base}]}
    document["paths"] = {path: item for path, item in document["paths"].items() if path != "/events"}
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    calls: list[str] = []
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(headers={"Authorization": f"token {live.token}"}, timeout=60)
            calls.append(f"{case.method} {case.formatted_path} {response.status_code}")
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
            )

        check()
    assert len(calls) >= len(operations)


HOSTILE_CASES: list[tuple[str, str, dict[str, Any]]] = [
    *[
        ("POST", "/models", {"body": {"repo_id": "tiny/gpt2", "revision": revision}})
        for revision in (".", "..", "a//b", "main/", "-x", "@{-1}", "a\\b", "x.lock")
    ],
    *[
        ("POST", "/models/preview", {"body": {"repo_id": "tiny/gpt2", "token": token}})
        for token in ("hf_\u00e9\u202e", "hf_a\r\nX-Injected: 1", "hf a")
    ],
    *[("GET", "/models", {"query": {"q": value}}) for value in ("a\x00b", "a\nb", "\x7f")],
]


def test_hostile_cases_conform_and_are_refused(live: JupyterServer) -> None:
    """The refusals the hostile-input suites found, replayed through schemathesis: each a documented
    400 whose body conforms to the document."""
    base = f"http://127.0.0.1:{live.port}{API}"
    schema = schemathesis.openapi.from_dict({**copy.deepcopy(openapi.document()), "servers": [{"url": base}]})
    schema.config.update(base_url=base)
    for method, path, parts in HOSTILE_CASES:
        case = schema[path][method].Case(**parts)
        response = case.call(headers={"Authorization": f"token {live.token}"}, timeout=60)
        case.validate_response(
            response, checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
        )
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_argument"), (path, parts)
