"""The one place that knows HTTP statuses: domain errors to {"error": {"code", "message"}}."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.api.limits import REFUSED
from app.decision import errors as decision
from app.face import errors as face
from app.gallery import errors as gallery

log = logging.getLogger("faceverify.api")
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class ApiError(Exception):
    """An error raised by the API layer itself, with its code and status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field  # the request field at fault, when one is
        self.headers = headers


class Unauthorized(ApiError):
    """No API key, or an unknown one."""

    def __init__(self, message: str = "a valid API key is required (X-API-Key, or a bearer token)") -> None:
        super().__init__(
            401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="faceverify"'}
        )


class Forbidden(ApiError):
    """The key may not use that collection."""

    def __init__(self, collection: str) -> None:
        super().__init__(403, "forbidden", f"this API key may not use collection {collection!r}")


class Overloaded(ApiError):
    """Too much work queued: try again shortly."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__(
            503,
            "overloaded",
            "the service is busy; retry shortly",
            headers={"Retry-After": str(retry_after_s)},
        )


_STATUS: list[tuple[type[Exception], int]] = [
    (face.ImageTooLarge, 413),
    (face.UnsupportedImageFormat, 415),
    (face.ImageError, 400),
    (face.FaceNotUsable, 422),
    (face.FaceChoiceInvalid, 422),
    (face.ModelNotFound, 404),
    (gallery.ModelNotServed, 404),
    (gallery.CollectionNotFound, 404),
    (gallery.SubjectNotFound, 404),
    (gallery.FaceNotFound, 404),
    (gallery.ThumbnailNotStored, 404),
    (gallery.SubjectHasNoFaces, 422),
    (gallery.MetadataTooLarge, 422),
    (gallery.InsufficientStorage, 507),
    (gallery.StoreUnavailable, 503),
    (gallery.IndexUnavailable, 503),
    (gallery.CollectionExists, 409),
    (gallery.GalleryModelMismatch, 409),
    (gallery.InvalidEmbedding, 422),
    (decision.OperatingPointUnsupported, 422),
]


def status_of(error: Exception) -> int:
    """The HTTP status of a domain error (500 for the unexpected)."""
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 500)


def error_body(code: str, message: str, **details: object) -> dict[str, dict[str, object]]:
    """The one error shape; details (the culprit `field`, competing face `boxes`) only when known."""
    return {
        "error": {"code": code, "message": message, **{k: v for k, v in details.items() if v is not None}}
    }


def _location(loc: Sequence[object]) -> str:
    """A validation error's field as a client names it: `images[2]`, `top_k` (no body/query prefix)."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (the router names only its first match's)."""
    allowed = [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.routes
        )
    ]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI, on_error: Callable[[str], None]) -> None:
    """Map every error a request can meet onto the one JSON shape; `on_error` is told each code."""

    def answer(
        request: Request,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        **details: object,
    ) -> JSONResponse:
        if not request.scope.get(REFUSED):  # BodyLimit answered already; this is never sent
            on_error(code)
        return JSONResponse(error_body(code, message, **details), status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return answer(request, exc.status, exc.code, str(exc), exc.headers, field=exc.field)

    @app.exception_handler(face.FaceError)
    @app.exception_handler(gallery.GalleryError)
    @app.exception_handler(decision.DecisionError)
    async def domain_error(
        request: Request, exc: face.FaceError | gallery.GalleryError | decision.DecisionError
    ) -> JSONResponse:
        field = getattr(exc, "field", None)
        boxes = getattr(exc, "boxes", None)
        return answer(request, status_of(exc), exc.code, str(exc), field=field, boxes=boxes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        problems = "; ".join(f"{_location(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors)
        field = _location(errors[0].get("loc", ())) if errors else None
        return answer(request, 422, "invalid_field", problems or "invalid request", field=field or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            return answer(
                request, 405, "method_not_allowed", str(exc.detail), {"Allow": _allowed_methods(request)}
            )
        # 400 comes from parsing a form: too many files or fields, or a malformed body.
        codes = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return answer(request, exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return answer(request, 500, "internal_error", "an unexpected error occurred")
