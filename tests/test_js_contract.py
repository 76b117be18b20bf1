"""The fixtures the JS views are tested with are valid server answers (tests/js_contract.py), and the
check reports a fixture that is not."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.js_contract import js_fixtures, violations
from tests.prerequisites import missing


@pytest.fixture(scope="module")
def fixtures() -> dict[str, Any]:
    try:
        return js_fixtures()
    except FileNotFoundError as error:
        missing(str(error))


def test_every_js_fixture_is_a_valid_answer_of_its_route(fixtures: dict[str, Any]) -> None:
    assert {"record", "downloading", "preview", "architecture", "hooks"} <= set(fixtures)
    assert {name: violations(name, value) for name, value in fixtures.items()} == {name: [] for name in fixtures}


@pytest.mark.parametrize(
    ("name", "path", "value", "reported"),
    [
        ("record", ["gated"], "manual", "gated: 'manual' is not of type 'boolean'"),
        ("record", ["updated_at"], "yesterday", "updated_at: 'yesterday' is not a 'date-time'"),
        ("record", ["tokens"], 3, "(root): Additional properties are not allowed ('tokens' was unexpected)"),
        ("downloading", ["status"], "paused", "status: 'paused' is not one of"),
        ("preview", ["memory", "fp16", "total_bytes"], 1.5, "memory/fp16/total_bytes: 1.5 is not of type 'integer'"),
        ("architecture", ["tree", "children", 0, "own_params"], "0", "tree/children/0/own_params: '0' is not of type"),
        ("hooks", [0, "kind"], "both", "0/kind: 'both' is not one of"),
    ],
)
def test_a_fixture_that_breaks_the_contract_is_reported(
    fixtures: dict[str, Any], name: str, path: list[Any], value: Any, reported: str
) -> None:
    broken = copy.deepcopy(fixtures[name])
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    assert any(violation.startswith(reported) for violation in violations(name, broken)), violations(name, broken)


def test_a_fixture_without_a_route_is_reported() -> None:
    assert violations("someday", {}) == [
        "no route for fixture 'someday': add it to tests/js_contract.py ROUTE_OF_FIXTURE"
    ]
