"""`faceverify train prepare`: a folder per person -> aligned chips cut by the serving code.

Chips are cut by app.face (the detector, the template and the warp the service uses), so a model
trains on exactly what it will be served. Output, per requested size: chips_<size>.npy (N, S, S, 3)
uint8; and index.csv (row, person, label, source image, faces found) and report.json for all.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from app.face.align import align_face
from app.face.errors import ImageError
from app.face.pipeline import FacePipeline
from training.evaluate import central_face

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
INDEX_FILE = "index.csv"
REPORT_FILE = "report.json"


def chips_file(size: int) -> str:
    """The array file of the chips of one size."""
    return f"chips_{size}.npy"


@dataclass
class PrepareReport:
    """What happened to every image."""

    people: int = 0
    images: int = 0
    chips: int = 0
    no_face: list[str] = field(default_factory=list)
    several_faces: list[str] = field(default_factory=list)  # kept: the face nearest the centre
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0


def person_folders(images: Path, only: set[str] | None = None) -> list[Path]:
    """One folder per person, in name order; with `only`, just those people."""
    if not images.is_dir():
        raise FileNotFoundError(f"{images} is not a folder of one folder per person")
    folders = sorted(p for p in images.iterdir() if p.is_dir() and (only is None or p.name in only))
    if not folders:
        raise ValueError(f"{images} holds no person folders" + (" of the people asked for" if only else ""))
    return folders


def scaled_template(pipeline: FacePipeline, size: int) -> tuple[tuple[float, float], ...]:
    """The served alignment template, for chips of `size` instead of the embedder's own size."""
    factor = size / pipeline.embedder.chip_size[0]
    return tuple((x * factor, y * factor) for x, y in pipeline.embedder.template)


def alignment_template_id(pipeline: FacePipeline, size: int) -> str:
    """The name of the served template, scaled to chips of `size` (its own name at its own size)."""
    served = pipeline.embedder.artifact.input_contract.alignment_template or "template"
    return served if size == pipeline.embedder.chip_size[0] else f"{served}@{size}"


def prepare(
    pipeline: FacePipeline,
    images: Path,
    out: Path,
    sizes: list[int],
    only: set[str] | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Detect the face of every image (nearest the centre when several), cut it at each size, and write
    the chips, the index and the report into `out`."""
    started = time.perf_counter()
    report = PrepareReport()
    folders = person_folders(images, only)
    templates = {size: scaled_template(pipeline, size) for size in sizes}
    chips: dict[int, list[np.ndarray]] = {size: [] for size in sizes}
    rows: list[tuple[int, str, int, str, int]] = []
    files = [
        (label, folder, path)
        for label, folder in enumerate(folders)
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    report.people = len(folders)
    report.images = len(files)
    for label, folder, path in tqdm(
        files, desc="aligning", unit="img", disable=not progress, file=sys.stderr
    ):
        name = f"{folder.name}/{path.name}"
        try:
            image, face, found = central_face(pipeline, path)
        except (OSError, ImageError):
            report.unreadable.append(name)
            continue
        if face is None:
            report.no_face.append(name)
            continue
        if found > 1:
            report.several_faces.append(name)
        for size in sizes:
            chips[size].append(align_face(image, face.landmarks, templates[size], size))
        rows.append((len(rows), folder.name, label, name, found))
    out.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        stacked = np.stack(chips[size]) if chips[size] else np.zeros((0, size, size, 3), np.uint8)
        np.save(out / chips_file(size), stacked)
    with (out / INDEX_FILE).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "person", "label", "source", "faces_found"])
        writer.writerows(rows)
    report.chips = len(rows)
    report.seconds = round(time.perf_counter() - started, 1)
    # The alignment the chips were cut with travels with them, so that an exported model can state it.
    alignment = {
        str(size): {"template": alignment_template_id(pipeline, size), "points": templates[size]}
        for size in sizes
    }
    (out / REPORT_FILE).write_text(
        json.dumps({**report.__dict__, "sizes": sizes, "alignment": alignment}, indent=2) + "\n"
    )
    return report
