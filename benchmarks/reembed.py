"""`faceverify gallery reembed`: what moving a collection to another model from its 256 px thumbnails costs.

Run: .venv/bin/python -m benchmarks.reembed [--people N]
Needs ../shared/data/lfw-dev (or FV_LFW_DIR), the stock models and torch (the `train` extra). The stock
network is exported in the plain dlib convention and imported back as a second model, whose vectors equal
the stock model's on the same chips: re-embedding a stock collection into it measures exactly what the
thumbnails lose. Gallery: the first photo of each DevTest person with two or more, enrolled by the stock
model with thumbnails; probes: their second photo.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.config import Settings
from app.face.choice import FaceChoice
from app.face.errors import FaceError
from app.face.pipeline import THUMBNAIL_SIDE, FacePipeline, FaceResult, Upload
from app.gallery.errors import SubjectNotFound
from app.gallery.gallery import Gallery
from app.gallery.store import Enrollment, NewFace
from app.local import LocalService
from benchmarks.results_file import write_results
from faceverify.reembed import reembed
from tests.assets import LFW_DEV, copy_models, devtest_people, lfw_photos
from tests.onnx_models import dlib_plain_onnx
from training.importer import ImportResult, import_embedder

COLLECTION = "staff"
CHECK_PHOTOS = 6


def prepare_models(models: Path, work: Path) -> tuple[Path, ImportResult]:
    """A copy of the models folder with the stock network imported back through the `dlib` preset."""
    folder = copy_models(models, work / "models")
    check = work / "check"
    check.mkdir()
    photos = lfw_photos(limit=CHECK_PHOTOS)
    if not photos:
        raise SystemExit(f"no LFW development photos under {LFW_DEV}: set FV_LFW_DIR")
    for photo in photos:
        shutil.copy2(photo, check / photo.name)
    result = import_embedder(
        folder,
        dlib_plain_onnx(work / "dlib_plain.onnx"),
        "dlib",
        licence="the stock dlib weights, re-exported for this benchmark",
        check_images=check,
        log=lambda _: None,
        progress=False,
    )
    return folder, result


def central(pipeline: FacePipeline, path: Path, thumbnails: bool = False) -> FaceResult:
    """The photo's central face (LFW centres the named person), as enroll or a probe takes it."""
    upload = Upload(path.name, path.read_bytes(), FaceChoice("central"))
    if thumbnails:
        (found,) = pipeline.enrollment_faces([upload], thumbnails=True)
    else:
        (found,) = pipeline.chosen_faces([upload])
    return found


def spread(values: npt.NDArray[np.float64]) -> dict[str, float]:
    """Median, 5th percentile and minimum."""
    if values.size == 0:
        return {"median": float("nan"), "p5": float("nan"), "min": float("nan")}
    return {
        "median": float(np.median(values)),
        "p5": float(np.percentile(values, 5)),
        "min": float(values.min()),
    }


def stored_vector(gallery: Gallery, collection: str, subject: str) -> npt.NDArray[np.float32] | None:
    """A subject's one stored vector, or None where it is not in the collection (its face refused)."""
    try:
        vectors = gallery.subject_embeddings(collection, subject)
    except SubjectNotFound:
        return None
    return np.asarray(vectors[0], dtype=np.float32)


@dataclass
class Enrolled:
    """The people enrolled, each with the vector of their first photo and the probe of their second."""

    subjects: list[str]
    photos: npt.NDArray[np.float32]
    probes: npt.NDArray[np.float32]
    probe_paths: list[Path]
    left_out: int
    faces_per_s: float


def enroll_people(gallery: Gallery, pipeline: FacePipeline, people: list[list[Path]]) -> Enrolled:
    """Enroll each person's first photo with its thumbnail, as the service does, and embed the second."""
    model_id = pipeline.model_id
    gallery.create_collection(COLLECTION, model_id)
    subjects, photos, probes, probe_paths = [], [], [], []
    left_out, seconds = 0, 0.0
    for first, second in people:
        try:
            probe = central(pipeline, second)
            tick = time.perf_counter()
            enrolled = central(pipeline, first, thumbnails=True)
        except FaceError:
            left_out += 1
            continue
        face = enrolled.face
        box, score = face.detection.box, face.detection.score
        new_face = NewFace.from_photo(face.embedding, box, score, first.read_bytes(), enrolled.thumbnail)
        subject = first.parent.name
        gallery.enroll(COLLECTION, [Enrollment(subject, [new_face])], create=False, model_id=model_id)
        seconds += time.perf_counter() - tick
        subjects.append(subject)
        photos.append(face.embedding)
        probes.append(probe.face.embedding)
        probe_paths.append(second)
    return Enrolled(
        subjects,
        np.stack(photos).astype(np.float32),
        np.stack(probes).astype(np.float32),
        probe_paths,
        left_out,
        len(subjects) / seconds,
    )


def identification(
    gallery: Gallery, collection: str, model_id: str, subjects: list[str], probes: npt.NDArray[np.float32]
) -> dict[str, Any]:
    """Rank-1 rate of the mated probes and their similarity to their own subject's stored face."""
    rankings = gallery.rank(collection, probes, top_k=1, model_id=model_id)
    hit = np.array(
        [
            bool(r.candidates) and r.candidates[0].subject_id == s
            for r, s in zip(rankings, subjects, strict=True)
        ]
    )
    hits = int(hit.sum())
    mated = []
    for subject, probe in zip(subjects, probes, strict=True):
        vector = stored_vector(gallery, collection, subject)
        # A subject whose face was refused is absent: its probe can only be missed.
        mated.append(float(vector @ probe) if vector is not None else float("nan"))
    return {"rank1": hits / len(subjects), "rank1_hits": hits, "hit": hit, "mated": np.array(mated)}


def measure(models: Path, people: list[list[Path]]) -> tuple[dict[str, Any], list[str]]:
    """Enroll, move and compare in a scratch data directory; the figures, and lines about single faces."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder, imported = prepare_models(models, work)
        settings = Settings(data_dir=work / "data", models_dir=folder, store_face_thumbnails=True)
        with LocalService(settings) as local:
            gallery = local.gallery
            stock, new = local.pipeline(local.catalog.built.id), local.pipeline(imported.artifact.id)
            enrolled = enroll_people(gallery, stock, people)
            subjects = enrolled.subjects
            # The stock probes serve both galleries: the imported model's vectors are the stock one's.
            new_probes = np.stack([central(new, path).face.embedding for path in enrolled.probe_paths])
            probe_difference = float(np.abs(new_probes - enrolled.probes).max())

            before = identification(gallery, COLLECTION, stock.model_id, subjects, enrolled.probes)
            tick = time.perf_counter()
            report = reembed(local, COLLECTION, new.model_id)
            seconds = time.perf_counter() - tick
            after = identification(gallery, report.target, new.model_id, subjects, enrolled.probes)
            moved = [stored_vector(gallery, report.target, s) for s in subjects]

    kept = [i for i, vector in enumerate(moved) if vector is not None]
    cosines = np.array(
        [float(vector @ enrolled.photos[i]) for i, vector in enumerate(moved) if vector is not None]
    )
    mated_before, mated_after = before.pop("mated"), after.pop("mated")
    hit_before, hit_after = before.pop("hit"), after.pop("hit")
    thumb, natural = spread(cosines), spread(mated_before)
    threshold = stock.embedder.artifact.threshold
    accept = threshold.similarity if threshold is not None else None

    def at_threshold(mated: npt.NDArray[np.float64]) -> float | None:
        # A refused face is no match at any threshold.
        return None if accept is None else float(np.mean(np.nan_to_num(mated, nan=-1.0) >= accept))

    figures: dict[str, Any] = {
        "people": len(subjects),
        "people_left_out": enrolled.left_out,
        "evaluated_on": "lfw-dev DevTest people with two photos: the first enrolled, the second the probe",
        "stock_model": stock.model_id,
        "imported_model": new.model_id,
        "import_difference": imported.difference,
        "probe_difference_between_models": probe_difference,
        "thumbnail_side": THUMBNAIL_SIDE,
        "reembed": {
            "faces": report.faces,
            "embedded": report.embedded,
            "refused": len(report.refused),
            "refusals": sorted({r.code for r in report.refused}),
            "seconds": seconds,
            "faces_per_s": report.embedded / seconds,
            "enroll_from_photos_faces_per_s": enrolled.faces_per_s,
        },
        "thumbnail_vs_photo_cosine": thumb,
        "same_person_photo1_vs_photo2_cosine": natural,
        # How far a thumbnail moves a face, as a share of how far another photo of the person does.
        "thumbnail_distance_share_of_natural": (1 - thumb["median"]) / (1 - natural["median"]),
        "identification": {
            "before": {**before, "mated_similarity": spread(mated_before)},
            "after": {**after, "mated_similarity": spread(mated_after[kept])},
            "mated_similarity_change": spread((mated_after - mated_before)[kept]),
            "rank1_gained": int((hit_after & ~hit_before).sum()),
            "rank1_lost": int((hit_before & ~hit_after).sum()),
            "verify_threshold": accept,
            "mated_at_or_above_threshold": {
                "before": at_threshold(mated_before),
                "after": at_threshold(mated_after),
            },
        },
    }
    lowest = sorted(zip(cosines, (subjects[i] for i in kept), strict=True))[:5]
    notes = [f"  refused {r.subject_id}: {r.code}: {r.message}" for r in report.refused]
    notes.append("  lowest thumbnail vs photo cosines: " + ", ".join(f"{n} {c:.4f}" for c, n in lowest))
    return figures, notes


def _spread_line(label: str, values: dict[str, float], signed: bool = False) -> str:
    form = "+.4f" if signed else ".4f"
    return f"{label}: median {values['median']:{form}}, p5 {values['p5']:{form}}, min {values['min']:{form}}"


def report_lines(figures: dict[str, Any]) -> list[str]:
    """The figures in words."""
    move, ident = figures["reembed"], figures["identification"]
    lines = [
        f"{figures['people']} people enrolled with {figures['thumbnail_side']} px thumbnails "
        f"({figures['people_left_out']} left out: no usable face in a photo) at "
        f"{move['enroll_from_photos_faces_per_s']:.1f} faces/s; {figures['imported_model']} imported "
        f"(difference {figures['import_difference']:.1e}; "
        f"on the probes {figures['probe_difference_between_models']:.1e})",
        f"reembed: {move['embedded']} of {move['faces']} faces in {move['seconds']:.1f} s "
        f"({move['faces_per_s']:.1f} faces/s), {move['refused']} refused {' '.join(move['refusals'])}",
        _spread_line("thumbnail vs photo cosine", figures["thumbnail_vs_photo_cosine"]),
        _spread_line("same person, photo 1 vs photo 2", figures["same_person_photo1_vs_photo2_cosine"]),
        f"1 - cosine at the median: the thumbnail's is {figures['thumbnail_distance_share_of_natural']:.1%} "
        "of a second photo's",
    ]
    accept = ident["verify_threshold"]
    for label in ("before", "after"):
        row = ident[label]
        line = f"{label:>6}: rank-1 {row['rank1']:.4f} ({row['rank1_hits']} of {figures['people']}); "
        line += _spread_line("mated similarity", row["mated_similarity"])
        if accept is not None:
            share = ident["mated_at_or_above_threshold"][label]
            line += f"; at or above the verify threshold {accept:.4f}: {share:.4f}"
        lines.append(line)
    lines.append(
        _spread_line("mated similarity change (after - before)", ident["mated_similarity_change"], True)
    )
    lines.append(f"rank-1 after the move: {ident['rank1_gained']} probes gained, {ident['rank1_lost']} lost")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument(
        "--people",
        type=int,
        default=None,
        help="DevTest people with two photos to use (default: all 353, about three minutes on 2 cores)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    people = devtest_people(args.people or sys.maxsize)
    if not people:
        raise SystemExit(f"no DevTest pairs under {LFW_DEV}: set FV_LFW_DIR")
    figures, notes = measure(args.models, people)
    figures["runtime_s"] = time.perf_counter() - started
    print("\n".join([*report_lines(figures), *notes]))
    path = write_results("reembed", figures)
    print(f"recorded in {path} ({figures['runtime_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
