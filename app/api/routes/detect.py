"""POST /detect: every face in a photo."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from app.api.deps import EngineDep, PipelineDep, SettingsDep, read_image
from app.api.responses import WITH_PHOTOS, errors
from app.api.schemas import DetectResponse, FaceOut
from app.face.detector import Detection
from app.face.pipeline import culprit

router = APIRouter(tags=["faces"])


@router.post("/detect", response_model=DetectResponse, responses=errors(*WITH_PHOTOS))
async def detect(
    pipeline: PipelineDep,
    engine: EngineDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File()],
) -> DetectResponse:
    """Boxes, landmarks and scores of every face, largest first."""
    data = await read_image(image, settings, "image")

    def find() -> list[Detection]:
        with culprit("image"):
            return pipeline.detect_photo(pipeline.decode_photo(data))

    detections = await engine.run(find)
    return DetectResponse(faces=[FaceOut.of(d) for d in detections], count=len(detections))
