"""The contract between the server and the views: every fixture the JS tests feed the views
(`js/tests/fixtures.js`) must be a valid answer of the route it stands for, by the OpenAPI document the
server enforces. A server change that would break the views then fails here, not in a browser.

    .venv/bin/python -m tests.js_contract      # (make test-js) one line per fixture; exit 1 on a violation
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

from mistudio_jupyter.server import openapi

FIXTURES = Path(__file__).resolve().parents[1] / "js" / "tests" / "fixtures.js"

ROUTE_OF_FIXTURE = {  # fixtures.js export -> the route and method whose 200 answer it stands for
    "record": ("/models/{id}", "get"),
    "downloading": ("/models/{id}", "get"),
    "inUse": ("/models/{id}", "get"),
    "preview": ("/models/preview", "post"),
    "architecture": ("/models/{id}/architecture", "get"),
    "estimate": ("/models/{id}/estimate", "get"),
    "hooks": ("/models/{id}/hooks", "get"),
}

# Imports fixtures.js and prints every export as JSON (a function export: what it returns with no arguments).
EXPORT_SCRIPT = """
const fixtures = await import(process.argv[1]);
const values = Object.fromEntries(Object.entries(fixtures).map(([name, value]) =>
  [name, typeof value === "function" ? value() : value]));
console.log(JSON.stringify(values));
"""


def js_fixtures(path: Path = FIXTURES) -> dict[str, Any]:
    """Every export of a fixtures module, as the views receive it."""
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is not on PATH (the JS tests need it too: https://nodejs.org)")
    done = subprocess.run(
        [node, "--input-type=module", "-e", EXPORT_SCRIPT, path.as_uri()], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def response_pointer(route: str, method: str) -> str:
    """The JSON pointer of an operation's 200 JSON response schema in the OpenAPI document."""
    escaped = route.replace("~", "~0").replace("/", "~1")
    return f"/paths/{escaped}/{method}/responses/200/content/application~1json/schema"


def violations(name: str, value: Any) -> list[str]:
    """How fixture `name` breaks the schema of the answer it stands for (empty when it does not)."""
    if name not in ROUTE_OF_FIXTURE:
        return [f"no route for fixture {name!r}: add it to tests/js_contract.py ROUTE_OF_FIXTURE"]
    validator = openapi.validator(response_pointer(*ROUTE_OF_FIXTURE[name])).evolve(
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(value), key=lambda error: list(map(str, error.absolute_path)))
    ]


def main() -> int:
    fixtures = js_fixtures()
    failed = False
    for name, value in fixtures.items():
        found = violations(name, value)
        failed = failed or bool(found)
        route, method = ROUTE_OF_FIXTURE.get(name, ("?", "?"))
        print(f"{'FAIL' if found else 'ok  '} {name}: {method.upper()} {route} 200")
        for violation in found:
            print(f"       {violation}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
