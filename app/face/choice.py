"""Which face of a photo a request uses: the largest (default), the most central, the n-th of /detect's
list, or the one a given box points at; and when enroll may take a face of a photo with several."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from app.face.detector import Detection
from app.face.errors import FaceChoiceInvalid, NoFace

# Enroll takes the largest face unasked when it is at least this many times the area of the next:
# the subject in front of background people, not two people side by side.
DOMINANCE = 2.0
# A box picks the detected face it overlaps most, when they overlap at least this much (IoU).
MIN_BOX_OVERLAP = 0.3
_BOX = re.compile(r"^\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*$")

Rule = Literal["largest", "central", "index", "box"]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FaceChoice:
    """A rule for picking one face; `index` and `box` go with their rules."""

    rule: Rule = "largest"
    index: int = 0
    box: Box | None = None
    field: str | None = None  # the request field it was given in, named when it names no face

    @classmethod
    def parse(cls, text: str | None, field: str | None = None) -> FaceChoice:
        """`largest`, `central`, an index (`0` is the largest, as /detect lists them) or a box
        `x1,y1,x2,y2` in pixels; FaceChoiceInvalid (422) for anything else."""
        if text is None or text.strip() in ("", "largest"):
            return cls(field=field)
        text = text.strip()
        if text == "central":
            return cls("central", field=field)
        if text.isascii() and text.isdigit() and len(text) <= 6:
            return cls("index", index=int(text), field=field)
        found = _BOX.match(text) if text.isascii() else None
        try:
            x1, y1, x2, y2 = (float(v) for v in found.groups()) if found else (0.0, 0.0, 0.0, 0.0)
        except ValueError:  # "1.2.3" passes the pattern, not float()
            x1 = y1 = x2 = y2 = 0.0
        if all(math.isfinite(v) for v in (x1, y1, x2, y2)) and x2 > x1 and y2 > y1:
            return cls("box", box=(x1, y1, x2, y2), field=field)
        raise FaceChoiceInvalid(
            f"face must be largest, central, an index of /detect's list, or a box x1,y1,x2,y2; not {text!r}",
            field,
        )

    @property
    def asks_for_one(self) -> bool:
        """The caller named a face (index or box), so the photo's other faces do not matter."""
        return self.rule in ("index", "box")

    def pick(self, detections: Sequence[Detection], size: tuple[int, int]) -> Detection:
        """The chosen face among `detections` (largest first) of an image of `size` (width, height)."""
        if not detections:
            raise NoFace("no face was found in the image")
        if self.rule == "largest":
            return detections[0]
        if self.rule == "central":
            cx, cy = size[0] / 2, size[1] / 2
            return min(detections, key=lambda d: math.hypot(_centre(d.box)[0] - cx, _centre(d.box)[1] - cy))
        if self.rule == "index":
            if self.index >= len(detections):
                raise FaceChoiceInvalid(
                    f"face {self.index} was asked for; the image has {len(detections)}", self.field
                )
            return detections[self.index]
        box = self.box
        if box is None:
            raise FaceChoiceInvalid("a box choice needs its box", self.field)
        best = max(detections, key=lambda d: overlap(d.box, box))
        if overlap(best.box, box) < MIN_BOX_OVERLAP:
            raise NoFace(f"no detected face overlaps the box {list(box)}")
        return best


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def overlap(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def dominates(detections: Sequence[Detection]) -> bool:
    """The largest face is at least DOMINANCE times the area of every other (or is alone)."""
    return len(detections) < 2 or detections[0].area >= DOMINANCE * detections[1].area
