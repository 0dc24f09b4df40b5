"""The error answers each route documents in OpenAPI: their statuses, codes and the one error shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """What went wrong: a stable code to branch on, and a message for people."""

    code: str = Field(description="stable error code, e.g. no_face or request_too_large")
    message: str = Field(description="what went wrong, for people; its wording may change")
    field: str | None = Field(
        None, description="the request field at fault, when one is: image_b, images[2], top_k"
    )
    boxes: list[list[float]] | None = Field(
        None, description="many_faces: the competing faces' boxes (x1, y1, x2, y2), largest first"
    )


class ErrorOut(BaseModel):
    """The one shape of every error answer."""

    error: ErrorDetail


# Each status with the codes that answer it (see the README's table).
CODES = {
    400: "bad_image (empty, corrupt or not an image), invalid_body (a form with too many parts or malformed)",
    401: "unauthorized: a valid API key is required (X-API-Key, or a bearer token)",
    403: "forbidden: the key may not use this collection",
    404: "collection_not_found, subject_not_found, face_not_found, thumbnail_not_stored",
    409: "collection_exists, gallery_model_mismatch",
    413: "image_too_large (bytes or pixels), request_too_large (the whole body)",
    415: "unsupported_media_type: not a JPEG, PNG, WebP, BMP, GIF or TIFF image",
    422: "invalid_field, no_face, many_faces, face_too_small, subject_has_no_faces, "
    "operating_point_unsupported",
    503: "overloaded: too much work queued; retry after the Retry-After seconds",
    507: "insufficient_storage: the gallery's disk is full; the write was rolled back",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="faceverify"'}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
}

# Every request may carry too large a body or fail validation; routes with a key may be refused it.
ANY_ROUTE = (413, 422)
WITH_KEY = (401, 403)
# A route that decodes photos and runs the pipeline on the engine.
WITH_PHOTOS = (400, 415, 503)
# A route that writes to the gallery.
WRITES = (503, 507)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the error schema and its codes."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        documented[status] = {"model": ErrorOut, "description": CODES[status]}
        if status in HEADERS:
            documented[status]["headers"] = HEADERS[status]
    return documented
