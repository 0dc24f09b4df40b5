"""Request-scoped access to what the lifespan loaded, and who is calling, as FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Path, Query, Request, Security, UploadFile
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.auth import Caller
from app.api.engine import ServingEngine
from app.api.errors import ApiError
from app.api.metrics import Metrics
from app.api.state import Service, service_of
from app.config import Settings
from app.face.choice import FaceChoice
from app.face.errors import BadImage, ImageTooLarge
from app.face.pipeline import FacePipeline, culprit
from app.gallery.gallery import Gallery

# Two ways to present a key, documented as the OpenAPI security schemes: Prometheus and many HTTP
# clients send a bearer token more easily than a custom header.
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKey", auto_error=False, description="an API key of FV_API_KEYS"
)
BEARER = HTTPBearer(scheme_name="Bearer", auto_error=False, description="an API key of FV_API_KEYS")


# These are `async` though they never wait: FastAPI runs a plain `def` dependency in a worker thread,
# a thread hop per dependency per request.
async def _settings(request: Request) -> Settings:
    return service_of(request.app.state).settings


async def _pipeline(request: Request) -> FacePipeline:
    return service_of(request.app.state).pipeline


async def _gallery(request: Request) -> Gallery:
    return service_of(request.app.state).gallery


async def _engine(request: Request) -> ServingEngine:
    return service_of(request.app.state).engine


async def _service(request: Request) -> Service:
    return service_of(request.app.state)


async def _metrics(request: Request) -> Metrics:
    return service_of(request.app.state).metrics


async def authenticated(
    request: Request,
    api_key: Annotated[str | None, Security(API_KEY_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Caller:
    """The caller of this request, from X-API-Key or a bearer token; 401 without a valid key.

    Every route gets this unless its router is one of the public ones (see app.main)."""
    presented = api_key if api_key is not None else bearer.credentials if bearer is not None else None
    return service_of(request.app.state).keys.caller(presented)


SettingsDep = Annotated[Settings, Depends(_settings)]
PipelineDep = Annotated[FacePipeline, Depends(_pipeline)]
GalleryDep = Annotated[Gallery, Depends(_gallery)]
EngineDep = Annotated[ServingEngine, Depends(_engine)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
ServiceDep = Annotated[Service, Depends(_service)]
CallerDep = Annotated[Caller, Depends(authenticated)]


async def _query_collection(
    caller: CallerDep, collection: Annotated[str, Query(min_length=1, max_length=128)] = "default"
) -> str:
    caller.check(collection)
    return collection


async def _form_collection(
    caller: CallerDep, collection: Annotated[str, Form(min_length=1, max_length=128)] = "default"
) -> str:
    caller.check(collection)
    return collection


async def _path_collection(
    caller: CallerDep, name: Annotated[str, Path(min_length=1, max_length=128)]
) -> str:
    caller.check(name)
    return name


# A collection named by the request, once the caller is known to be allowed it (403 otherwise).
QueryCollection = Annotated[str, Depends(_query_collection)]
FormCollection = Annotated[str, Depends(_form_collection)]
PathCollection = Annotated[str, Depends(_path_collection)]


async def read_image(upload: UploadFile, settings: Settings, field: str) -> bytes:
    """An uploaded image's bytes, refusing more than FV_MAX_IMAGE_BYTES without reading them all;
    errors name `field`."""
    data = await upload.read(settings.max_image_bytes + 1)
    with culprit(field):
        if len(data) > settings.max_image_bytes:
            raise ImageTooLarge(
                f"{upload.filename or 'the image'} is larger than {settings.max_image_bytes:,} bytes"
            )
        if not data:
            raise BadImage(f"{upload.filename or 'the image'} is empty")
    return data


AFTER_SEQ_HELP = (
    "an enrollment's `seq`: answer from a gallery that holds it (read your own writes on any replica)"
)


def ensure_seen(gallery: Gallery, after_seq: int | None) -> None:
    """Catch the gallery up to `after_seq` where it is behind (blocking: call it off the event loop);
    422 for a number the store has not reached."""
    if after_seq is not None and not gallery.seen(after_seq):
        raise ApiError(
            422, "invalid_field", f"after_seq {after_seq} is beyond the gallery's changes", field="after_seq"
        )


MODEL_HELP = "the embedder, by id or name (`GET /ready` lists them; default: the default model)"


def face_choice(text: str | None, field: str) -> FaceChoice:
    """A face choice field, parsed; 422 naming the field when it names no rule (or, later, no face)."""
    return FaceChoice.parse(text, field)


FACE_CHOICE_HELP = (
    "which face: largest (default), central, an index of /detect's list (0 is the largest), or a box "
    "x1,y1,x2,y2 (the detected face that overlaps it most)"
)
