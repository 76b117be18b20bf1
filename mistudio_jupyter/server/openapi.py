"""The OpenAPI document (`openapi.yaml`) as the server's input contract.

Request bodies and query strings are checked against the operation's own schemas in the document,
so what the document promises is what the server enforces. Validation messages are written here,
never copied from the validator, so they cannot echo a submitted value (a token, say).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from ..core.errors import InvalidArgument, MiStudioError
from .errors import UnknownChoice

DOCUMENT_PATH = Path(__file__).with_name("openapi.yaml")
_URI = "urn:mistudio:openapi"


@functools.cache
def document() -> dict[str, Any]:
    """The parsed OpenAPI document."""
    with DOCUMENT_PATH.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(_URI, Resource(contents=document(), specification=DRAFT202012))


def validator(pointer: str) -> jsonschema.Draft202012Validator:
    """A validator for the schema at a JSON pointer into the document (`/components/schemas/Model`)."""
    return _validator(pointer)


@functools.cache
def _validator(pointer: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"{_URI}#{pointer}"}, registry=_registry())


def _escape(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def operation(route: str, method: str) -> dict[str, Any]:
    """The document's operation object for a route template (`/models/{id}`) and HTTP method."""
    return document()["paths"][route][method.lower()]


def request_body_pointer(route: str, method: str) -> str | None:
    """The JSON pointer of an operation's request-body schema, None when it takes no body."""
    if "requestBody" not in operation(route, method):
        return None
    return f"/paths/{_escape(route)}/{method.lower()}/requestBody/content/application~1json/schema"


def check_body(route: str, method: str, body: Any) -> dict[str, Any]:
    """`body` when it satisfies the operation's request schema; raises the 400/422 error otherwise."""
    pointer = request_body_pointer(route, method)
    if pointer is None:
        if body not in (None, {}):
            raise InvalidArgument("this endpoint takes no request body")
        return {}
    if body is None:
        if operation(route, method)["requestBody"].get("required"):
            raise InvalidArgument("a JSON object body is required")
        body = {}
    _check(validator(pointer), body, "body")
    return body


def query_parameters(route: str, method: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """An operation's query parameters by name: the pointer to each schema and the resolved schema."""
    return _query_parameters(route, method.lower())


@functools.cache
def _query_parameters(route: str, method: str) -> dict[str, tuple[str, dict[str, Any]]]:
    base = f"/paths/{_escape(route)}/{method}/parameters"
    return {
        parameter["name"]: (f"{base}/{index}/schema", _resolve(parameter["schema"]))
        for index, parameter in enumerate(operation(route, method).get("parameters", []))
        if parameter.get("in") == "query"
    }


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document()
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return schema


def check_query(
    route: str, method: str, arguments: Mapping[str, list[bytes]], ignore: frozenset[str]
) -> dict[str, Any]:
    """The query arguments converted to their schema types and validated; unknown names are 400.

    A bare numeric argument (`?1700000000000`, JupyterLab's default cache-buster) is not a parameter.
    """
    if any(
        _has_control_character(text)
        for name, values in arguments.items()
        for text in (name, *(value.decode("utf-8", "replace") for value in values))
    ):
        raise InvalidArgument("query parameters must not contain control characters (NUL, newline, ...)")
    accepted = query_parameters(route, method)
    cache_busters = {name for name, values in arguments.items() if name.isdigit() and values in ([b""], [])}
    unknown = sorted(set(arguments) - set(accepted) - ignore - cache_busters)
    if unknown:
        raise InvalidArgument(f"unknown query parameter(s): {', '.join(unknown)}")
    values = {}
    for name, (pointer, schema) in accepted.items():
        if name in arguments:
            values[name] = _convert(name, arguments[name][-1].decode("utf-8", "replace"), schema)
            _check(validator(pointer), values[name], name)
    return values


def _has_control_character(text: str) -> bool:
    return any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in text)


def _convert(name: str, raw: str, schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            raise InvalidArgument(f"`{name}` must be an integer") from None
    if kind == "boolean":
        if raw.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"`{name}` must be true or false")
        return raw.lower() in ("true", "1")
    return raw


def _check(schema_validator: jsonschema.Draft202012Validator, value: Any, where: str) -> None:
    error = jsonschema.exceptions.best_match(schema_validator.iter_errors(value))
    if error is not None:
        raise _describe(error, where)


def _describe(error: jsonschema.ValidationError, where: str) -> MiStudioError:
    field = ".".join(str(part) for part in error.absolute_path) or where
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return InvalidArgument(f"unknown field(s) in {field}: {', '.join(map(str, extra))}")
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return InvalidArgument(f"missing required field(s) in {field}: {', '.join(missing)}")
    if error.validator in ("enum", "const"):
        choices = error.validator_value if error.validator == "enum" else [error.validator_value]
        return UnknownChoice(f"`{field}` must be one of: {', '.join(map(str, choices))}")
    if error.validator == "type":
        return InvalidArgument(f"`{field}` must be of type {error.validator_value}")
    return InvalidArgument(f"`{field}` is invalid ({error.validator} {error.validator_value})")
