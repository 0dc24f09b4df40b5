"""POST /detect: every face in a photo."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from app.api.deps import ApiKey, GateDep, KeysDep, PipelineDep, SettingsDep, read_image
from app.api.schemas import DetectResponse, FaceOut
from app.face.detector import Detection

router = APIRouter(tags=["faces"])


@router.post("/detect", response_model=DetectResponse)
async def detect(
    pipeline: PipelineDep,
    gate: GateDep,
    keys: KeysDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File()],
    api_key: ApiKey = None,
) -> DetectResponse:
    """Boxes, landmarks and scores of every face, largest first."""
    keys.check(api_key, None)
    data = await read_image(image, settings)

    def find() -> list[Detection]:
        return pipeline.detect_photo(pipeline.decode_photo(data))

    detections = await gate.run(find)
    return DetectResponse(faces=[FaceOut.of(d) for d in detections], count=len(detections))
