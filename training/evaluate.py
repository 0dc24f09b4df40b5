"""Face-verification figures on LFW-format pairs, computed through the serving pipeline."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from app.decision.curves import MIN_PAIRS_ABOVE
from app.face.detector import Detection
from app.face.errors import ImageError
from app.face.pipeline import FacePipeline
from training.lfw import Pair

FAR_TARGET = 1e-3


@dataclass
class EmbeddingPass:
    """One embedding per image, with what happened on the way."""

    vectors: dict[Path, np.ndarray]
    no_face: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ms_per_image(self) -> float:
        return 1000 * self.seconds / max(1, len(self.vectors))


def _nearest_centre(detections: list[Detection], image: np.ndarray) -> Detection:
    """LFW's convention: of several faces, the one whose box centre is nearest the image centre."""
    cy, cx = image.shape[0] / 2, image.shape[1] / 2

    def distance(d: Detection) -> float:
        return float(np.hypot((d.box[0] + d.box[2]) / 2 - cx, (d.box[1] + d.box[3]) / 2 - cy))

    return min(detections, key=distance)


def central_face(pipeline: FacePipeline, path: Path) -> tuple[np.ndarray, Detection | None, int]:
    """An image file decoded, its face nearest the centre (None if it has none) and how many it has;
    OSError or ImageError when the file cannot be read as an image."""
    photo = pipeline.decode_photo(path.read_bytes())
    detections = pipeline.detect_photo(photo)
    image = photo.pixels()
    return image, (_nearest_centre(detections, image) if detections else None), len(detections)


def _centre_face(image: np.ndarray, relative_landmarks: np.ndarray) -> Detection:
    """A stand-in face where none was found: the run's typical landmarks, scaled to this image."""
    h, w = image.shape[:2]
    points = relative_landmarks * np.array([w, h])
    return Detection(box=(0.0, 0.0, float(w), float(h)), score=0.0, landmarks=tuple(map(tuple, points)))


def embed_images(pipeline: FacePipeline, paths: Iterable[Path], progress: bool = True) -> EmbeddingPass:
    """Embed each image once (decode, detect, align, embed), timing the whole pass."""
    unique = list(dict.fromkeys(paths))
    result = EmbeddingPass(vectors={})
    relative: list[np.ndarray] = []
    started = time.perf_counter()
    for path in tqdm(unique, desc="embedding", unit="img", disable=not progress, file=sys.stderr):
        try:
            image, face, _ = central_face(pipeline, path)
        except (OSError, ImageError):
            result.unreadable.append(path)
            continue
        if face is None:
            result.no_face.append(path)
            continue
        relative.append(np.asarray(face.landmarks) / np.array([image.shape[1], image.shape[0]]))
        (embedded,) = pipeline.embed([image], [face])
        result.vectors[path] = embedded.embedding
    if result.no_face:
        typical = np.median(relative, axis=0) if relative else np.array(pipeline.embedder.template) / 150
        for path in result.no_face:
            image = pipeline.decode(path.read_bytes())
            (embedded,) = pipeline.embed([image], [_centre_face(image, typical)])
            result.vectors[path] = embedded.embedding
    result.seconds = time.perf_counter() - started
    return result


def pair_similarities(pairs: list[Pair], vectors: dict[Path, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and same-person label of every pair whose two images were embedded."""
    sims, labels = [], []
    for pair in pairs:
        if pair.left in vectors and pair.right in vectors:
            sims.append(float(vectors[pair.left] @ vectors[pair.right]))
            labels.append(pair.same)
    return np.asarray(sims), np.asarray(labels, dtype=bool)


def accuracy_at(sims: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of pairs classified right by `similarity >= threshold`."""
    return float(np.mean((sims >= threshold) == labels))


def best_threshold(sims: np.ndarray, labels: np.ndarray) -> float:
    """The accuracy-maximising threshold, midway between the two similarities that bracket it."""
    values = np.unique(sims)
    candidates = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2, [values[-1] + 1e-6]])
    accuracies = np.array([accuracy_at(sims, labels, t) for t in candidates])
    best = np.flatnonzero(accuracies == accuracies.max())
    # Several thresholds may tie: take the middle of the tied run, the most robust choice.
    return float(candidates[best[len(best) // 2]])


def threshold_for_far(sims: np.ndarray, labels: np.ndarray, far: float) -> float:
    """The lowest threshold whose false-accept rate on the different-person pairs is <= far."""
    different = np.sort(sims[~labels])[::-1]
    allowed = int(np.floor(far * len(different)))
    if allowed >= len(different):
        return float(different[-1])
    # Accept at most `allowed` different pairs: sit just above the next one.
    return float(np.nextafter(different[allowed], np.inf))


def far_at(sims: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """False-accept rate at a threshold."""
    return float(np.mean(sims[~labels] >= threshold))


def auc(sims: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the chance a same pair outscores a different pair)."""
    same, different = sims[labels], sims[~labels]
    order = np.argsort(np.concatenate([same, different]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return float((ranks[: len(same)].sum() - len(same) * (len(same) + 1) / 2) / (len(same) * len(different)))


def tenfold_accuracy(sims: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """LFW's protocol: the threshold is fit on nine folds and scored on the tenth; mean and std."""
    if len(np.unique(folds)) < 2:
        raise ValueError("the 10-fold protocol needs pairs in at least two folds")
    scores = []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        threshold = best_threshold(sims[train], labels[train])
        scores.append(accuracy_at(sims[test], labels[test], threshold))
    return float(np.mean(scores)), float(np.std(scores))


def plot_roc(sims: np.ndarray, labels: np.ndarray, path: Path, title: str) -> None:
    """Write the ROC curve (log FAR axis) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = np.unique(sims)[::-1]
    far = np.array([far_at(sims, labels, t) for t in thresholds])
    tar = np.array([np.mean(sims[labels] >= t) for t in thresholds])
    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.plot(np.maximum(far, 1e-4), tar, lw=2)
    axis.set_xscale("log")
    axis.set_xlim(1e-3 / 2, 1)
    # Strong models live in the top band; a weak one (early in training) needs the whole axis.
    shown = tar[far >= 1e-3 / 2]
    axis.set_ylim(min(0.8, float(np.floor(shown.min() * 10) / 10)) if shown.size else 0.8, 1.001)
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def file_digest(path: Path) -> str:
    """Short sha256 of a file, naming the data a figure came from."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def evaluate_pairs(
    pipeline: FacePipeline, pairs: list[Pair], threshold: float, progress: bool = True
) -> dict[str, Any]:
    """Every figure of `faceverify eval lfw` for one pairs list."""
    embedded = embed_images(pipeline, [p for pair in pairs for p in (pair.left, pair.right)], progress)
    usable = [pair for pair in pairs if pair.left in embedded.vectors and pair.right in embedded.vectors]
    sims, labels = pair_similarities(usable, embedded.vectors)
    folds = np.array([pair.fold for pair in usable])
    mean, std = tenfold_accuracy(sims, labels, folds)
    different = int((~labels).sum())
    # A FAR is only measured where enough different-person pairs lie above its threshold.
    val_supported = different * FAR_TARGET >= MIN_PAIRS_ABOVE
    val_threshold = threshold_for_far(sims, labels, FAR_TARGET)
    failures = [
        {
            "left": str(pair.left),
            "right": str(pair.right),
            "same": pair.same,
            "similarity": round(float(s), 4),
        }
        for pair, s, label in zip(usable, sims, labels, strict=True)
        if (s >= threshold) != label
    ]
    return {
        "pairs": len(usable),
        "pairs_skipped_unreadable": len(pairs) - len(usable),
        "images": len(embedded.vectors),
        "accuracy_10fold": mean,
        "accuracy_10fold_std": std,
        "threshold": threshold,
        "accuracy_at_threshold": accuracy_at(sims, labels, threshold),
        "far_at_threshold": far_at(sims, labels, threshold),
        "val_at_far_1e-3": float(np.mean(sims[labels] >= val_threshold)) if val_supported else None,
        "val_threshold": val_threshold if val_supported else None,
        "val_note": None
        if val_supported
        else f"not measured: {different} different-person pairs, and FAR {FAR_TARGET:g} needs at least "
        f"{int(MIN_PAIRS_ABOVE / FAR_TARGET):,} (10 above the threshold); `faceverify calibrate` scores "
        "every pair of a labelled folder",
        "auc": auc(sims, labels),
        "no_face_images": len(embedded.no_face),
        "no_face_paths": [str(p) for p in embedded.no_face],
        "unreadable_images": [str(p) for p in embedded.unreadable],
        "ms_per_image": embedded.ms_per_image,
        "flip_average": pipeline.settings.flip_average,
        "model": pipeline.model_id,
        "failures": failures,
        "_similarities": sims,
        "_labels": labels,
    }
