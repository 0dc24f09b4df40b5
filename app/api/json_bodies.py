"""JSON bodies for the routes that take photos: `application/json` with base64 images and the same
fields as the multipart form, turned into that form before the app reads it, so both bodies get the
same validation, limits (on decoded bytes) and errors; and OpenAPI documents both."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.fields import MAX_METADATA_DEPTH, strict_json
from app.api.limits import is_json, refusal

MULTIPART = "multipart/form-data"
JSON = "application/json"


class BodyError(Exception):
    """A JSON body that cannot stand for a form: its status, code, message and field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.field = status, code, field


def _is_binary(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(
        o.get("contentMediaType") == "application/octet-stream" or o.get("format") == "binary"
        for o in options
    )


def photo_fields(openapi: dict[str, Any]) -> dict[str, tuple[set[str], set[str]]]:
    """path -> (its single photo fields, its lists of photos), for every POST taking a multipart form."""
    schemas = openapi.get("components", {}).get("schemas", {})
    found: dict[str, tuple[set[str], set[str]]] = {}
    for path, operations in openapi.get("paths", {}).items():
        body = operations.get("post", {}).get("requestBody", {}).get("content", {}).get(MULTIPART)
        if body is None:
            continue
        schema = schemas[body["schema"]["$ref"].rsplit("/", 1)[1]]
        singles = {name for name, prop in schema["properties"].items() if _is_binary(prop)}
        lists = {
            name for name, prop in schema["properties"].items()
            if prop.get("type") == "array" and _is_binary(prop.get("items", {}))
        }  # fmt: skip
        found[path] = (singles, lists)
    return found


def _decoded(value: object, field: str, limit: int) -> bytes:
    """A base64 image (a `data:...;base64,` prefix allowed)."""
    if not isinstance(value, str):
        raise BodyError(422, "invalid_field", f"{field} must be a base64 string", field)
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    if len(text) // 4 * 3 > limit:  # too large decoded: said before a byte is decoded
        raise BodyError(413, "image_too_large", f"{field} is larger than {limit:,} bytes", field)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BodyError(422, "invalid_field", f"{field} is not valid base64", field) from None


def _text(value: object, field: str) -> str:
    """A form field's text for a JSON value: strings as they are, numbers and booleans as a form
    would send them, objects (metadata) as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    raise BodyError(422, "invalid_field", f"{field} must be a string, number, boolean or object", field)


def as_form(
    body: bytes, singles: set[str], lists: set[str], max_image_bytes: int, max_request_bytes: int
) -> tuple[bytes, str]:
    """A JSON body as the multipart form it stands for, and that form's boundary."""
    try:
        fields = strict_json(body, MAX_METADATA_DEPTH + 1)
    except ValueError as exc:
        raise BodyError(
            422, "invalid_field", f"the body must be a strict JSON object: {exc}", "body"
        ) from None
    if not isinstance(fields, dict):
        raise BodyError(422, "invalid_field", "the body must be a JSON object", "body")
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    total = 0
    for name, value in fields.items():
        if value is None:
            continue  # as if the field were left out
        if name in singles or name in lists:
            values = value if name in lists and isinstance(value, list) else [value]
            for i, item in enumerate(values):
                field = f"{name}[{i}]" if name in lists else name
                data = _decoded(item, field, max_image_bytes)
                if len(data) > max_image_bytes:  # as read_image would say it, before any more is decoded
                    raise BodyError(
                        413, "image_too_large", f"{field} is larger than {max_image_bytes:,} bytes", field
                    )
                total += len(data)
                head = (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{field}"\r\n'
                )
                parts.append(
                    head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
                )
        else:
            text = _text(value, name).encode()
            total += len(text)
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            parts.append(head.encode() + text + b"\r\n")
        if total > max_request_bytes:
            raise BodyError(
                413, "request_too_large", f"the decoded request exceeds {max_request_bytes:,} bytes"
            )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), boundary


class JsonBodies:
    """ASGI middleware: a JSON POST to a route that takes photos reaches it as its multipart form."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Callable[[], dict[str, tuple[set[str], set[str]]]],
        allowed: Callable[[Scope], bool],
        max_image_bytes: int,
        max_request_bytes: int,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.routes = routes  # read on first use: the app's routes are all there by then
        self.allowed = allowed  # a valid key: no one else makes the service hold a decoded body
        self.max_image_bytes = max_image_bytes
        self.max_request_bytes = max_request_bytes
        self.on_refused = on_refused
        self._routes: dict[str, tuple[set[str], set[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not is_json(scope):
            await self.app(scope, receive, send)
            return
        if self._routes is None:
            self._routes = self.routes()
        fields = self._routes.get(scope["path"])
        if fields is None or not self.allowed(scope):
            await self.app(scope, receive, send)  # the app answers (401 without a valid key)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        try:
            form, boundary = as_form(body, *fields, self.max_image_bytes, self.max_request_bytes)
        except BodyError as exc:
            if self.on_refused is not None:
                self.on_refused(exc.code)
            for message in refusal(exc.status, exc.code, str(exc), exc.field):
                await send(message)
            return
        del body  # only the form from here: it is the larger part of what the request holds
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [
            (b"content-type", f"{MULTIPART}; boundary={boundary}".encode()),
            (b"content-length", str(len(form)).encode()),
        ]
        pending: list[bytes] = [form]
        del form

        async def replay() -> Message:
            if not pending:
                return await receive()  # past the body: a disconnect, when it comes
            # Handed over once, and not kept here: the app holds the only reference from then on.
            return {"type": "http.request", "body": pending.pop(), "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (the edge's BodyLimit has bounded it), or None on a disconnect."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def document_json_bodies(app: FastAPI) -> None:
    """Add, beside each photo route's multipart body in OpenAPI, its JSON body (photos as base64)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        schemas = spec["components"]["schemas"]
        for path, (singles, lists) in photo_fields(spec).items():
            content = spec["paths"][path]["post"]["requestBody"]["content"]
            name = content[MULTIPART]["schema"]["$ref"].rsplit("/", 1)[1]
            json_schema = copy.deepcopy(schemas[name])
            json_schema["title"] = f"{name}_json"
            for field, prop in json_schema["properties"].items():
                photo = {"type": "string", "contentEncoding": "base64", "description": "base64 of the photo"}
                if field in singles:
                    prop.update({"anyOf": [photo, {"type": "null"}]} if "anyOf" in prop else photo)
                    prop.pop("contentMediaType", None)
                elif field in lists:
                    prop["items"] = photo
                elif field == "metadata":
                    prop["anyOf"] = [{"type": "object"}, *prop.get("anyOf", [])]
            schemas[json_schema["title"]] = json_schema
            content[JSON] = {"schema": {"$ref": f"#/components/schemas/{json_schema['title']}"}}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
