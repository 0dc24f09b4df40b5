"""An imported ArcFace-shaped embedder served beside the built one by a real server: collections bound
to each, enroll, identify and verify through the collection's model, and /verify's model=."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.face.align import FivePointCut, apply_transform, invert_transform
from app.face.catalog import ModelCatalog
from app.face.pipeline import FacePipeline
from tests.conftest import ImportedModels, photo
from tests.server import running_server

ARCFACE_POINTS = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


def test_the_imported_model_cuts_112_px_chips_on_arcfaces_five_points(
    imported_models: ImportedModels, photos: list[Path]
) -> None:
    pipeline = FacePipeline.from_models(imported_models.folder, model=imported_models.name)
    assert pipeline.model_id == imported_models.arcface
    assert pipeline.embedder.cut == FivePointCut(ARCFACE_POINTS, 112)
    photo_bytes = photo(photos, "obama.jpg").read_bytes()
    found = pipeline.decode_photo(photo_bytes)
    face = pipeline.detect_photo(found)[0]  # the largest
    matrix = pipeline.embedder.cut.chip_to_image(face.box, face.landmarks, found.size)
    # The landmarks land on the template, up to what a least-squares similarity leaves (a smile widens
    # the mouth): the eyes within 2.5 px of ArcFace's, every point within 8.
    off = np.abs(apply_transform(invert_transform(matrix), face.landmarks) - np.array(ARCFACE_POINTS))
    assert off[:2].max() < 2.5 and off.max() < 8.0
    assert pipeline.photo_chip(found, face).shape == (112, 112, 3)


def _files(*pairs: tuple[str, Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (path.name, path.read_bytes(), "image/jpeg")) for field, path in pairs]


def test_collections_bound_to_each_model_enroll_identify_and_verify_with_it(
    imported_models: ImportedModels, photos: list[Path], tmp_path: Path
) -> None:
    stock, arcface, name = imported_models.stock, imported_models.arcface, imported_models.name
    obama, obama2, biden = (photo(photos, n) for n in ("obama.jpg", "obama2.jpg", "biden.jpg"))
    with (
        running_server(imported_models.folder, tmp_path / "data") as url,
        httpx.Client(base_url=url, timeout=30) as api,
    ):
        ready = api.get("/ready").json()
        built = [a.id for a in ModelCatalog.load(imported_models.folder).built_embedders()]
        assert [m["model_id"] for m in ready["models"]] == [*built, arcface] and built[0] == stock
        card = ready["models"][-1]
        assert (card["name"], card["default"], card["embedding_size"], card["chip_size"]) == (
            name,
            False,
            512,
            112,
        )
        assert card["alignment"] == "arcface5-112" and card["preset"] == "arcface"
        assert card["licence"] == "random weights, for tests"
        assert card["verify"]["rule"] == "uncalibrated" and card["stated"] == []
        assert ready["models"][0]["default"] and len(ready["models"][0]["stated"]) == 3

        created = api.post("/collections", data={"name": "wide", "model": name})
        assert created.status_code == 201 and created.json()["model_id"] == arcface
        for person, path in (("obama", obama), ("biden", biden)):
            enrolled = api.post(
                "/enroll", data={"subject_id": person, "collection": "wide"}, files=_files(("images", path))
            )
            assert enrolled.status_code == 201 and enrolled.json()["model_id"] == arcface
        found = api.post("/identify", data={"collection": "wide"}, files=_files(("image", obama))).json()
        assert found["model_id"] == arcface
        assert found["candidates"][0]["subject_id"] == "obama"
        assert found["candidates"][0]["similarity"] > 0.999  # the enrolled photo itself
        assert found["operating_point"]["rule"] == "uncalibrated"

        # The default collection keeps the default model.
        assert api.post("/identify", files=_files(("image", obama))).json()["model_id"] == stock

        pair = _files(("image_a", obama), ("image_b", obama2))
        by_default = api.post("/verify", files=pair).json()
        by_arcface = api.post("/verify", data={"model": name}, files=pair).json()
        assert by_default["model_id"] == stock and by_arcface["model_id"] == arcface
        assert by_default["similarity"] != pytest.approx(by_arcface["similarity"], abs=1e-3)
        against = api.post(
            "/verify", data={"subject_id": "obama", "collection": "wide"}, files=_files(("image", obama))
        ).json()
        assert against["model_id"] == arcface and against["similarity"] > 0.999

        unknown = api.post("/verify", data={"model": "no-such-model"}, files=pair)
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "model_not_found"
        assert unknown.json()["error"]["field"] == "model"
        mixed = api.post(
            "/verify",
            data={"subject_id": "obama", "collection": "wide", "model": stock},
            files=_files(("image", obama)),
        )
        assert mixed.status_code == 422 and mixed.json()["error"]["field"] == "model"
        assert api.post("/collections", data={"name": "x", "model": "nope"}).status_code == 404


def test_a_key_learns_nothing_of_a_collection_it_may_not_use_and_json_bodies_name_the_model(
    imported_models: ImportedModels, photos: list[Path], tmp_path: Path
) -> None:
    obama, obama2 = photo(photos, "obama.jpg"), photo(photos, "obama2.jpg")
    keys = '{"admin-key": ["*"], "team-key": ["team"]}'
    with (
        running_server(imported_models.folder, tmp_path / "data", env={"FV_API_KEYS": keys}) as url,
        httpx.Client(base_url=url, timeout=30) as api,
    ):
        admin, team = {"X-API-Key": "admin-key"}, {"X-API-Key": "team-key"}
        assert (
            api.post(
                "/collections", data={"name": "secret", "model": imported_models.name}, headers=admin
            ).status_code
            == 201
        )
        # Asked with a model other than the collection's: 403 all the same, not what it is bound to.
        probe = _files(("image", obama))
        refused = api.post(
            "/verify",
            data={"subject_id": "x", "collection": "secret", "model": imported_models.stock},
            files=probe,
            headers=team,
        )
        assert refused.status_code == 403 and imported_models.arcface not in refused.text
        ready = api.get("/ready")  # public: it names no collection
        assert ready.status_code == 200 and "secret" not in ready.text
        body = {
            "image_a": base64.b64encode(obama.read_bytes()).decode(),
            "image_b": base64.b64encode(obama2.read_bytes()).decode(),
        }
        named = api.post("/verify", json={**body, "model": imported_models.name}, headers=team)
        assert named.status_code == 200 and named.json()["model_id"] == imported_models.arcface
        unknown = api.post("/verify", json={**body, "model": "nope"}, headers=team)
        assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "model"
        assert str(imported_models.folder) not in unknown.text  # the models folder is not told
