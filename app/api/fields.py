"""What ids and metadata may hold: only what every later request can address and read back."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from app.api.errors import ApiError

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
        raise ApiError(422, "invalid_field", f"{field} {problem}")
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


def _check_tree(value: Any) -> None:
    """Depth and strings of a parsed tree, without recursion."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_METADATA_DEPTH:
            raise ValueError(f"nesting deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(node, dict):
            for key, item in node.items():
                key.encode("utf-8")  # a lone surrogate cannot be written back as JSON
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            node.encode("utf-8")


def parse_metadata(raw: str | None) -> dict[str, Any] | None:
    """Strict JSON object (no NaN or Infinity, no lone surrogates, at most 16 levels deep, integers of
    at most 30 digits), or invalid_field (422)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_int=_integer, parse_float=_number)
        if not isinstance(value, dict):
            raise ValueError("not an object")
        _check_tree(value)
    except (ValueError, RecursionError, UnicodeEncodeError) as exc:
        reason = "nesting too deep" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError(422, "invalid_field", f"metadata must be a strict JSON object: {reason}") from None
    return value
