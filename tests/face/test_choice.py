"""Face choice rules: what each request field value means, and enroll's dominance rule."""

from __future__ import annotations

import pytest

from app.face.choice import FaceChoice, dominates, overlap
from app.face.detector import Detection
from app.face.errors import FaceChoiceInvalid, NoFace

LANDMARKS = ((0.0, 0.0),) * 5


def _face(x1: float, y1: float, x2: float, y2: float) -> Detection:
    return Detection(box=(x1, y1, x2, y2), score=0.99, landmarks=LANDMARKS)


# Largest first, as the pipeline lists them: a big face at the left, a smaller one in the middle.
FACES = [_face(0, 0, 100, 100), _face(150, 150, 230, 230), _face(300, 0, 340, 40)]
SIZE = (380, 380)


@pytest.mark.parametrize(
    ("text", "picked"), [(None, 0), ("largest", 0), ("central", 1), ("2", 2), ("302,2,338,38", 2)]
)
def test_each_rule_picks_its_face(text: str | None, picked: int) -> None:
    assert FaceChoice.parse(text).pick(FACES, SIZE) is FACES[picked]


@pytest.mark.parametrize(
    "text", ["biggest", "-1", "1,2,3", "5,5,1,1", "nan,0,1,1", "9999999", "²", "1.2.3,1,2,3", "\uff11,2,3,4"]
)
def test_a_choice_that_names_no_rule_is_refused_with_its_field(text: str) -> None:
    with pytest.raises(FaceChoiceInvalid) as refused:
        FaceChoice.parse(text, "face_b")
    assert refused.value.field == "face_b"


def test_a_choice_past_the_faces_found_or_off_every_face_is_refused() -> None:
    with pytest.raises(FaceChoiceInvalid, match="face 3 was asked for; the image has 3"):
        FaceChoice.parse("3", "face").pick(FACES, SIZE)
    with pytest.raises(NoFace, match="no detected face overlaps"):
        FaceChoice.parse("0,200,40,240").pick(FACES, SIZE)
    with pytest.raises(NoFace):
        FaceChoice.parse("central").pick([], SIZE)


def test_the_largest_dominates_at_twice_the_area_of_the_next() -> None:
    assert not dominates(FACES) and dominates(FACES[:1]) and dominates([])  # 80 px beside 100 px
    assert not dominates([_face(0, 0, 100, 100), _face(0, 0, 71, 71)])  # half the area plus a little
    assert dominates([_face(0, 0, 100, 100), _face(0, 0, 70, 70)])
    assert overlap((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
