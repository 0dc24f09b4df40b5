"""What ids and metadata may hold: only what every later request can address and read back."""

from __future__ import annotations

import json
import unicodedata
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from app.api.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)

MAX_METADATA_DEPTH = 16
MAX_METADATA_INT_DIGITS = 30  # beyond Python's and JSON readers' comfortable integer range


def checked_id(value: str, field: str) -> str:
    """A subject id or collection name a URL path can carry: no '/' or '\\', no control or format
    characters, no surrounding spaces, not '.' or '..'; invalid_field (422) otherwise."""
    problem = None
    if value != value.strip():
        problem = "must not begin or end with white space"
    elif value in (".", ".."):
        problem = "must not be '.' or '..'"
    elif "/" in value or "\\" in value:
        problem = "must not contain '/' or '\\'"
    elif any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in value):
        problem = "must not contain control, format, surrogate or unassigned characters"
    if problem:
        raise ApiError(422, "invalid_field", f"{field} {problem}", field)
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_METADATA_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is too long")
    return int(text)


def _number(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return value


def _check_tree(value: Any, max_depth: int) -> None:
    """Depth and strings of a parsed tree, without recursion."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"nesting deeper than {max_depth} levels")
        if isinstance(node, dict):
            for key, item in node.items():
                key.encode("utf-8")  # a lone surrogate cannot be written back as JSON
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            node.encode("utf-8")


def strict_json(raw: str | bytes, max_depth: int = MAX_METADATA_DEPTH) -> Any:
    """Strict JSON (no NaN or Infinity, no lone surrogates, at most `max_depth` levels deep, integers of
    at most 30 digits); ValueError saying why otherwise."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_int=_integer, parse_float=_number)
        _check_tree(value, max_depth)
    except RecursionError:
        raise ValueError("nesting too deep") from None
    except UnicodeError as exc:
        raise ValueError(str(exc)) from None
    return value


def strict_json_object(raw: str | bytes, field: str) -> dict[str, Any]:
    """A strict JSON object (see strict_json), or invalid_field (422) naming `field`."""
    try:
        value = strict_json(raw)
        if not isinstance(value, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        message = f"{field} must be a strict JSON object: {exc}"
        raise ApiError(422, "invalid_field", message, field) from None
    return value


def parse_metadata(raw: str | None) -> dict[str, Any] | None:
    """The metadata field: a strict JSON object (see strict_json_object), or None when absent."""
    return None if raw is None else strict_json_object(raw, "metadata")


async def json_body(request: Request, model: type[Model]) -> Model:
    """The request's JSON body, parsed as strictly as metadata, then validated as `model`; 422
    invalid_field naming the field at fault otherwise."""
    value = strict_json_object(await request.body(), "body")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(422, "invalid_field", f"{field}: {first['msg']}", field) from None


def json_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a route that reads `model` with json_body()."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
