"""Request-scoped access to what the lifespan loaded, as FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request, UploadFile

from app.api.auth import KeyRing
from app.api.inference import InferenceGate
from app.config import Settings
from app.decision.points import Decisions
from app.face.errors import BadImage, ImageTooLarge
from app.face.pipeline import FacePipeline
from app.gallery.gallery import Gallery


# These are `async` though they never wait: FastAPI runs a plain `def` dependency in a worker thread,
# a thread hop per dependency per request.
async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _pipeline(request: Request) -> FacePipeline:
    return request.app.state.pipeline  # type: ignore[no-any-return]


async def _gallery(request: Request) -> Gallery:
    return request.app.state.gallery  # type: ignore[no-any-return]


async def _gate(request: Request) -> InferenceGate:
    return request.app.state.gate  # type: ignore[no-any-return]


async def _keys(request: Request) -> KeyRing:
    return request.app.state.keys  # type: ignore[no-any-return]


async def _decisions(request: Request) -> Decisions:
    return request.app.state.decisions  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(_settings)]
PipelineDep = Annotated[FacePipeline, Depends(_pipeline)]
GalleryDep = Annotated[Gallery, Depends(_gallery)]
GateDep = Annotated[InferenceGate, Depends(_gate)]
KeysDep = Annotated[KeyRing, Depends(_keys)]
DecisionsDep = Annotated[Decisions, Depends(_decisions)]
ApiKey = Annotated[str | None, Header(alias="X-API-Key", description="API key, when the service has keys")]


async def _allowed_collection(
    keys: KeysDep,
    api_key: ApiKey = None,
    collection: Annotated[str, Query(min_length=1, max_length=128)] = "default",
) -> str:
    """The `collection` query parameter, once the API key is known to be allowed it."""
    keys.check(api_key, collection)
    return collection


AllowedCollection = Annotated[str, Depends(_allowed_collection)]


async def read_image(upload: UploadFile, settings: Settings) -> bytes:
    """An uploaded image's bytes, refusing more than FV_MAX_IMAGE_BYTES without reading them all."""
    data = await upload.read(settings.max_image_bytes + 1)
    if len(data) > settings.max_image_bytes:
        raise ImageTooLarge(
            f"{upload.filename or 'the image'} is larger than {settings.max_image_bytes:,} bytes"
        )
    if not data:
        raise BadImage(f"{upload.filename or 'the image'} is empty")
    return data
